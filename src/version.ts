/** shardctl's own version, recorded in ledgers and the internal schema (a unit test keeps it equal to package.json). */
export const SHARDCTL_VERSION = '0.1.0';

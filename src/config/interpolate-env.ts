/** Result of {@link interpolateEnv}. */
export interface Interpolated {
  value: string;
  /** Names of variables that were referenced without a default and are not set. */
  missing: string[];
}

/**
 * Substitutes `${VAR}` and `${VAR:-default}` in a string; `$$` stands for a literal `$`.
 * A variable that is unset (or empty, with `:-`) takes the default; one without a default is
 * reported in `missing` rather than silently replaced by an empty string.
 *
 * @example
 * interpolateEnv('${HOST}:5432', { HOST: 'db0' }).value // 'db0:5432'
 */
export function interpolateEnv(text: string, env: Record<string, string | undefined>): Interpolated {
  const missing: string[] = [];
  const value = text.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g,
    (whole, name: string | undefined, def: string | undefined) => {
      if (whole === '$$') return '$';
      const v = env[name!];
      if (def !== undefined) return v === undefined || v === '' ? def : v;
      if (v === undefined) {
        missing.push(name!);
        return '';
      }
      return v;
    },
  );
  return { value, missing };
}

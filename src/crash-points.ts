/**
 * Test-only crash points. A crash test sets `SHARDCTL_TEST_CRASH_AT` to one of these names and runs a
 * command; the process kills itself with SIGKILL when it reaches that point, which proves that the
 * journal and the idempotent steps repair a crash anywhere. Outside tests the variable is unset and a
 * crash point costs one environment lookup.
 *
 * The names form a closed list (the type below), so that a test cannot aim at a point the code no
 * longer has without the compiler saying so.
 */

/** Move states, as journaled (kept here as text so the lowest layer needs no move types). */
type JournaledState =
  | 'planned'
  | 'syncing'
  | 'replicating'
  | 'fenced'
  | 'copying'
  | 'copied'
  | 'verified'
  | 'switched'
  | 'cleaned'
  | 'done'
  | 'failed'
  | 'aborted';

/** Every point where a test can kill shardctl. `${string}` parts are a table name (`schema.table`) or a count. */
export type CrashPoint =
  | 'after-plan'
  | `after-state:${JournaledState}`
  | 'after-fence'
  | 'after-copy'
  | `before-copy:${string}`
  | `mid-copy:${string}`
  | `after-copy:${string}`
  | 'before-copy-commit'
  // A parallel copy: every stream prepared (no decision), the decision journaled, the first stream committed.
  | 'copy:after-prepares'
  | 'copy:after-decision'
  | 'copy:after-first-commit'
  | 'online:after-publication'
  | 'online:after-slot'
  | 'online:after-copy'
  | 'online:after-subscription'
  | 'online:in-pause'
  | 'trigger:after-tracking'
  | 'trigger:after-copy'
  | 'trigger:mid-delta'
  | 'trigger:in-pause'
  | 'mid-cleanup'
  | 'abort-after-delete'
  | `plan-after-move:${number}`
  // Two-phase commit (src/tx): after the first participant's PREPARE of several, after every PREPARE
  // before the decision, after the decision before any COMMIT PREPARED, after the first COMMIT PREPARED.
  | 'tx:after-first-prepare'
  | 'tx:after-prepares'
  | 'tx:after-decision'
  | 'tx:after-first-commit-prepared';

/** The environment variable that names the point to crash at. */
export const CRASH_AT_ENV = 'SHARDCTL_TEST_CRASH_AT';

/**
 * Kills the process with SIGKILL (no `finally`, no cleanup: a real crash) when `point` is the one the
 * environment names.
 *
 * @example
 * crashPoint(`mid-copy:${table}`); // SHARDCTL_TEST_CRASH_AT=mid-copy:public.items kills here
 */
export function crashPoint(point: CrashPoint): void {
  if (process.env[CRASH_AT_ENV] === point) process.kill(process.pid, 'SIGKILL');
}

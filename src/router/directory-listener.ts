import type { Client } from 'pg';
import { DIRECTORY_CHANNEL } from '../catalog/directory.js';
import type { ShardPools } from '../db/shard-pools.js';

/** What a {@link DirectoryListener} reports. */
export interface DirectoryEvents {
  /** The catalog committed directory version `version` (the notice of catalog step 12). */
  changed(version: number): void;
  /**
   * The LISTEN session is (again) up. Changes committed while it was down sent notices nobody heard:
   * the router re-reads once here.
   */
  listening(): void;
}

/** A router's LISTEN session on the catalog shard. */
export interface DirectoryListener {
  /** True while the session is up and listening. */
  readonly live: boolean;
  /** Ends the session and stops reconnecting. */
  close(): Promise<void>;
}

/** pg's Client.ref/unref (untyped): whether the session's socket keeps the process alive. */
function holdsProcess(c: Client, on: boolean): void {
  const sock = c as unknown as { ref(): void; unref(): void };
  if (on) sock.ref();
  else sock.unref();
}

/** First wait before reconnecting a lost session, in ms (doubled up to {@link MAX_RETRY_MS}). */
const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 30_000;

/**
 * Opens a session of its own on the catalog shard that LISTENs on the directory channel, and keeps it
 * open: a lost session reconnects with a growing pause, and reports `listening` again so that the
 * router re-reads what it may have missed. It never fails: a catalog it cannot reach (or a pooler in
 * transaction mode, where LISTEN is not kept) only leaves the router on its TTL checks. The session
 * does not keep the process alive (like the pools' idle connections).
 *
 * @example
 * const listener = listenForDirectory(pools, map.catalog, { changed: (v) => reread(v), listening: () => reread() });
 * await listener.close();
 */
export function listenForDirectory(pools: ShardPools, catalog: string, events: DirectoryEvents): DirectoryListener {
  let client: Client | undefined;
  let closed = false;
  let retryMs = FIRST_RETRY_MS;
  let timer: NodeJS.Timeout | undefined;
  let connecting: Promise<void> | undefined;

  const schedule = () => {
    if (closed) return;
    timer = setTimeout(() => (connecting = connect()), retryMs);
    timer.unref();
    retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
  };
  const drop = (c: Client) => {
    if (client !== c) return;
    client = undefined;
    c.end().catch(() => undefined);
    schedule();
  };
  const connect = async () => {
    let c: Client;
    try {
      c = await pools.connectDedicated(catalog, 'shardctl router');
    } catch {
      return schedule();
    }
    c.on('error', () => drop(c));
    c.on('end', () => drop(c));
    c.on('notification', (n) => {
      const version = Number(n.payload);
      if (n.channel === DIRECTORY_CHANNEL && Number.isSafeInteger(version)) events.changed(version);
    });
    try {
      await c.query(`LISTEN ${DIRECTORY_CHANNEL}`);
    } catch {
      await c.end().catch(() => undefined);
      return schedule();
    }
    if (closed) return void (await c.end().catch(() => undefined));
    // The socket of a session that only waits must not hold the process open.
    holdsProcess(c, false);
    client = c;
    retryMs = FIRST_RETRY_MS;
    events.listening();
  };
  connecting = connect();

  return {
    get live() {
      return client !== undefined;
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      await connecting;
      const c = client;
      client = undefined;
      if (!c) return;
      // Referenced again while it ends: else a process with nothing else to do exits before the end
      // completes, and whatever the caller awaits after close() never runs.
      holdsProcess(c, true);
      await c.end().catch(() => undefined);
    },
  };
}

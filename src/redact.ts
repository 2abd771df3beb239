/**
 * Passwords seen in loaded shard maps. Every message shardctl produces passes through
 * {@link redact}, which also hides these wherever they appear outside a URL (driver errors
 * sometimes echo them in other forms).
 */
const knownSecrets = new Set<string>();

/**
 * Remembers a secret so that {@link redact} hides it from every later message.
 * Secrets shorter than 4 characters are ignored: hiding them would mangle ordinary words.
 *
 * @example
 * registerSecret(new URL(url).password);
 */
export function registerSecret(secret: string | undefined): void {
  if (secret && secret.length >= 4) {
    knownSecrets.add(secret);
    try {
      const decoded = decodeURIComponent(secret);
      if (decoded.length >= 4) knownSecrets.add(decoded);
    } catch {
      // not percent-encoded: the raw form is enough
    }
  }
}

const URL_PASSWORD = /\b(postgres(?:ql)?:\/\/[^:@/\s]*):([^@\s]*)@/gi;
const KEYWORD_PASSWORD = /\b(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)/gi;

/**
 * Hides passwords in a text: the password part of connection URLs, `password=...` keywords and any
 * secret registered with {@link registerSecret}.
 *
 * @example
 * redact(`postgres://app:${password}@db0/app`) // the same URL, its password replaced by three asterisks
 */
export function redact(text: string): string {
  let out = text.replace(URL_PASSWORD, '$1:***@').replace(KEYWORD_PASSWORD, '$1***');
  for (const secret of knownSecrets) {
    if (out.includes(secret)) out = out.split(secret).join('***');
  }
  return out;
}

/**
 * A connection URL safe to show: the password replaced by `***`, query parameters that carry
 * secrets removed.
 *
 * @example
 * redactUrl(`postgres://app:${password}@db0:5432/app?sslpassword=x`) // password masked, sslpassword removed
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const key of [...u.searchParams.keys()]) {
      if (/pass|secret|key/i.test(key)) u.searchParams.delete(key);
    }
    return redact(u.toString());
  } catch {
    return redact(url);
  }
}

// The character rules of HTTP fields (RFC 9110 §5.5, §5.6.2), one copy for every parser: the
// listener's, the upstream client's and the WebSocket handshakes'. SECURITY-CRITICAL: loosening
// either lets a header line carry what a parser downstream reads differently.

/** A field name or method: RFC 9110's `token`. */
export const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** A byte no field value may hold: the controls but HTAB, and DEL. */
export const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

/** A Content-Length value: digits only, at most 15 of them (a safe integer, no sign, no list). */
export const LENGTH_DIGITS = /^\d{1,15}$/;

/** A comma-separated header value (Connection, say) that lists `Upgrade`, in any case. */
export const LISTS_UPGRADE = /(^|,)\s*upgrade\s*(,|$)/i;

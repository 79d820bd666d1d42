/** Network-level failure with a short code for the 502 message (never a header or a body). */
export class UpstreamError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** A reused socket closed before any answer byte: the request was not processed. */
    readonly stale = false,
  ) {
    super(message);
  }
}

export function bad(code: string, message: string): UpstreamError {
  return new UpstreamError(code, message);
}

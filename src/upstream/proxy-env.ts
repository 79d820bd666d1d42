// Whether the environment configures an HTTP(S) proxy for the upstream. Imports nothing: it runs
// before hardening (fetch-capacity.ts) as well as at start-up (transport.ts).

/** The variables Bun's fetch reads for a proxy (it applies NO_PROXY itself). */
const PROXY_VARIABLES = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"];

export function proxyConfigured(env: Record<string, string | undefined>): boolean {
  return PROXY_VARIABLES.some((name) => !!env[name]);
}

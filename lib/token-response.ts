import type { CachedToken } from './token-cache';

/** The body of a successful token response (DreamFactory's shape, plus `expires_at`). */
export interface TokenResponseBody {
  access_token: string;
  token_type: 'Bearer';
  /** Whole seconds the token is still valid at the time of the response (counts down on cache hits). */
  expires_in: number;
  expires_at: string;
  acquired_at: string;
  scope: string;
}

/** ISO-8601 UTC without milliseconds, the way DreamFactory prints times (and every time in the API). */
export function isoSeconds(epochMs: number): string {
  return new Date(epochMs).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The response body for a token served at `now` (epoch ms): `expires_in` counts down from the token's expiry. */
export function tokenResponseBody(token: CachedToken, now: number): TokenResponseBody {
  return {
    access_token: token.accessToken,
    token_type: 'Bearer',
    expires_in: Math.max(0, Math.floor((token.expiresAt - now) / 1000)),
    expires_at: isoSeconds(token.expiresAt),
    acquired_at: isoSeconds(token.acquiredAt),
    scope: token.scope,
  };
}

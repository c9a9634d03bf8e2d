import { randomUUID } from 'node:crypto';
import type { Logger } from '@aws-lambda-powertools/logger';
import type { EntraRetryPolicy } from '../entra-retry-policy';
import type { IssuedToken } from '../entra-token-client';
import {
  IdentityProviderError,
  IdentityProviderUnavailableError,
  NotFoundError,
  UserConsentRequiredError,
  ValidationError,
} from '../errors';
import type { RefreshCoordinator } from '../refresh-coordinator';
import type { ServiceRegistry } from '../service-registry';
import { type CachedToken, type CacheKey, isServable, type TokenCache } from '../token-cache';
import { isoSeconds } from '../token-response';
import type { ConsentFlow, ConsentRequestContext } from './consent';
import { resourceScopesOf } from './delegated-config';
import type { UserSecretSealer } from './sealer';
import type { DynamoDbUserGrantStore, UserGrant } from './user-grants';

/** Tunables; each has a production default. */
export interface UserTokenSettings {
  /** Fraction of a token's lifetime after which the next request refreshes it in the background. */
  refreshFraction: number;
  leaseTtlMs: number;
  /** How long a request waits for another instance's redemption before giving up with 503. */
  leaseWaitMs: number;
  leasePollMs: number;
}

export const DEFAULT_USER_TOKEN_SETTINGS: UserTokenSettings = {
  refreshFraction: 0.5,
  leaseTtlMs: 15_000,
  leaseWaitMs: 10_000,
  leasePollMs: 100,
};

export interface UserTokenFlowDependencies {
  registry: ServiceRegistry;
  grants: DynamoDbUserGrantStore;
  /** The token cache (sealed tokens), shared with the client credentials flow; users get their own partitions. */
  cache: TokenCache;
  coordinator: RefreshCoordinator;
  sealer: UserSecretSealer;
  consent: ConsentFlow;
  retries: EntraRetryPolicy;
  logger: Logger;
  settings?: Partial<UserTokenSettings>;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** A delegated token and whose it is. */
export interface UserTokenResult {
  token: CachedToken;
  cache: 'hit' | 'miss';
  grant: UserGrant;
}

/** One connected user as listed to administrators: never a token. */
export interface ConnectedUserView {
  key: string;
  oid: string;
  tid: string;
  preferred_username?: string;
  connected_at: string;
  last_refreshed_at?: string;
}

/** Entra's `invalid_grant` codes that mean the refresh token is dead, and the reason callers are given. */
const DEAD_GRANT_REASONS: Record<number, string> = {
  70008: 'refresh_token_expired',
  700082: 'refresh_token_expired_by_inactivity',
  50173: 'grant_revoked',
  65001: 'consent_withdrawn',
  50076: 'mfa_required',
  50079: 'mfa_required',
  700084: 'refresh_token_lifetime_exceeded',
};
const DEAD_GRANT_ERRORS = new Set(['invalid_grant', 'interaction_required', 'consent_required']);

/** The partition of a user's cached tokens (service names cannot contain `#`, so it never meets a service's). */
const userPartition = (service: string, userKey: string): string => `${service}#user#${userKey}`;

/**
 * Delegated access tokens for users who consented once: served from the token cache (sealed, expiry − 60 s,
 * refresh-ahead), redeemed from the user's refresh token otherwise. One lease per user across instances guards
 * the refresh token, so that however many callers miss at once only one redeems it; the rotated refresh token is
 * stored back with a conditional write (lib/authorization-code/user-grants.ts).
 */
export class UserTokenFlow {
  private readonly deps: UserTokenFlowDependencies;
  private readonly settings: UserTokenSettings;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly inflight = new Map<string, Promise<CachedToken>>();
  private readonly background = new Set<Promise<unknown>>();
  /**
   * Refresh tokens redeemed in this process whose write-back failed (DynamoDB trouble), by grant and generation:
   * the next redemption here uses the rotated one instead of the one Entra already replaced.
   */
  private readonly unsaved = new Map<string, string>();

  constructor(deps: UserTokenFlowDependencies) {
    this.deps = deps;
    this.settings = { ...DEFAULT_USER_TOKEN_SETTINGS, ...deps.settings };
    this.now = deps.now ?? Date.now;
    this.sleep = deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** Resolves once background refreshes started so far have finished (tests; shutdown). */
  async settled(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background]);
  }

  /**
   * A delegated token of `scope` (default: the service's first resource scope) for the user. Throws
   * UserConsentRequiredError (401, with a fresh authorization_url) when the user has no usable grant.
   */
  async getUserToken(
    name: string,
    userKey: string,
    request: ConsentRequestContext,
    options: { scope?: string; minTtlSeconds?: number } = {},
  ): Promise<UserTokenResult> {
    const service = await this.deps.consent.usableService(name);
    const scopes = resourceScopesOf(service.config);
    const scope = options.scope ?? (scopes[0] as string);
    if (!scopes.includes(scope)) {
      throw new ValidationError(`scope: "${scope}" is not one of the user scopes of service "${name}"`, {
        context: { field: 'scope', allowed: scopes },
      });
    }
    const grant = await this.deps.grants.get(name, userKey);
    if (!grant) throw await this.consentRequired(name, userKey, 'not_connected', request);
    const key: CacheKey = {
      service: userPartition(name, userKey),
      version: `${service.version}.${grant.grantId}`,
      scope,
    };
    const minTtlMs = (options.minTtlSeconds ?? 0) * 1000;
    const cached = await this.deps.cache.get(key);
    if (cached && cached.expiresAt - this.now() >= minTtlMs) {
      if (this.now() >= cached.refreshAt) this.refreshAhead(key, grant, request);
      return { token: cached, cache: 'hit', grant };
    }
    const token = await this.singleFlight(key, () => this.obtain(key, grant, request, minTtlMs, false));
    return { token, cache: 'miss', grant };
  }

  /** Forgets the user: the grant (refresh token) and every cached token. The service must exist. */
  async forget(name: string, userKey: string): Promise<void> {
    if (!(await this.deps.registry.get(name))) throw new NotFoundError(`service "${name}" does not exist`);
    await this.deps.grants.delete(name, userKey);
    await this.deps.cache.clear(userPartition(name, userKey));
    this.deps.logger.info('audit: user authorization removed', { serviceName: name, userKey });
  }

  /** The connected users of a service, for administrators. */
  async listUsers(name: string): Promise<ConnectedUserView[]> {
    if (!(await this.deps.registry.get(name))) throw new NotFoundError(`service "${name}" does not exist`);
    return (await this.deps.grants.list(name)).map((g) => ({
      key: g.userKey,
      oid: g.oid,
      tid: g.tid,
      ...(g.preferredUsername !== undefined ? { preferred_username: g.preferredUsername } : {}),
      connected_at: isoSeconds(g.connectedAt),
      ...(g.lastRefreshedAt !== undefined ? { last_refreshed_at: isoSeconds(g.lastRefreshedAt) } : {}),
    }));
  }

  private singleFlight(key: CacheKey, run: () => Promise<CachedToken>): Promise<CachedToken> {
    const k = `${key.service}\u0000${key.version}\u0000${key.scope}`;
    const running = this.inflight.get(k);
    if (running) return running;
    const promise = run().finally(() => this.inflight.delete(k));
    this.inflight.set(k, promise);
    return promise;
  }

  private refreshAhead(key: CacheKey, grant: UserGrant, request: ConsentRequestContext): void {
    const work = this.singleFlight(key, () => this.obtain(key, grant, request, 0, true)).catch((error) => {
      this.deps.logger.warn('user token refresh-ahead failed', { serviceName: grant.service, error });
    });
    this.background.add(work);
    void work.finally(() => this.background.delete(work));
  }

  private satisfies(token: CachedToken | undefined, minTtlMs: number, ahead: boolean): token is CachedToken {
    if (!token || !isServable(token, this.now()) || token.expiresAt - this.now() < minTtlMs) return false;
    return !ahead || token.refreshAt > this.now();
  }

  /**
   * Under the user's lease: redeem the refresh token, unless a token arrived meanwhile. Without the lease, wait for
   * the holder's token (polling the cache), retrying the lease, until the wait is over.
   */
  private async obtain(
    key: CacheKey,
    grant: UserGrant,
    request: ConsentRequestContext,
    minTtlMs: number,
    ahead: boolean,
  ): Promise<CachedToken> {
    // One lease per user, whatever the scope: the refresh token is the user's, not the scope's.
    const leaseKey: CacheKey = { ...key, scope: '#refresh-token' };
    const holder = randomUUID();
    const deadline = this.now() + this.settings.leaseWaitMs;
    for (;;) {
      if (await this.deps.coordinator.acquire(leaseKey, holder, this.settings.leaseTtlMs)) {
        try {
          const fresh = await this.deps.cache.get(key);
          if (this.satisfies(fresh, minTtlMs, ahead)) return fresh;
          return await this.redeem(key, grant, request);
        } finally {
          await this.deps.coordinator.release(leaseKey, holder);
        }
      }
      if (this.now() >= deadline) {
        throw new IdentityProviderUnavailableError(
          'another instance is still redeeming this user’s refresh token; retry shortly',
          { retryAfterSeconds: 1 },
        );
      }
      await this.sleep(this.settings.leasePollMs);
      const token = await this.deps.cache.get(key);
      if (this.satisfies(token, minTtlMs, false)) return token;
      const current = await this.deps.grants.get(grant.service, grant.userKey);
      // The holder found the refresh token dead (and removed it), or the user was forgotten or re-consented.
      if (!current || current.grantId !== grant.grantId) {
        throw await this.consentRequired(grant.service, grant.userKey, 'not_connected', request);
      }
    }
  }

  /** Redeems the user's current refresh token (read under the lease) and stores the rotated one back. */
  private async redeem(
    key: CacheKey,
    stale: UserGrant,
    request: ConsentRequestContext,
  ): Promise<CachedToken> {
    const grant = await this.deps.grants.get(stale.service, stale.userKey);
    if (!grant || grant.grantId !== stale.grantId) {
      throw await this.consentRequired(stale.service, stale.userKey, 'not_connected', request);
    }
    const sealContext = {
      purpose: 'token-broker:refresh-token' as const,
      service: grant.service,
      user_key: grant.userKey,
    };
    const unsavedKey = `${grant.service}\u0000${grant.userKey}\u0000${grant.grantId}\u0000${grant.generation}`;
    const refreshToken =
      this.unsaved.get(unsavedKey) ?? (await this.deps.sealer.open(grant.refreshToken, sealContext));
    const service = await this.deps.consent.usableService(grant.service);
    let rotated: string | undefined;
    let issued: IssuedToken;
    try {
      issued = await this.deps.retries.request(key, async (freshCredential) => {
        const context = await this.deps.consent.clientContext(service, { fresh: freshCredential });
        return async (timeoutMs) => {
          const tokens = await this.deps.consent.entraClient.refresh(
            context,
            refreshToken,
            key.scope,
            timeoutMs,
          );
          rotated = tokens.refreshToken;
          return tokens.issued;
        };
      });
    } catch (error) {
      if (error instanceof IdentityProviderError && DEAD_GRANT_ERRORS.has(String(error.context?.error))) {
        await this.deps.grants.delete(grant.service, grant.userKey, grant.grantId);
        await this.deps.cache.clear(key.service);
        const codes = Array.isArray(error.context?.error_codes)
          ? (error.context.error_codes as number[])
          : [];
        const reason = codes.map((c) => DEAD_GRANT_REASONS[c]).find(Boolean) ?? 'refresh_token_invalid';
        this.deps.logger.info('audit: dead refresh token removed', {
          serviceName: grant.service,
          userKey: grant.userKey,
          reason,
        });
        throw await this.consentRequired(grant.service, grant.userKey, reason, request);
      }
      throw error;
    }
    await this.storeRotation(grant, rotated, unsavedKey);
    const lifetimeMs = issued.expiresAt - issued.acquiredAt;
    const token: CachedToken = {
      accessToken: issued.accessToken,
      scope: key.scope,
      acquiredAt: issued.acquiredAt,
      expiresAt: issued.expiresAt,
      refreshAt: issued.acquiredAt + lifetimeMs * this.settings.refreshFraction,
    };
    await this.deps.cache.put(key, token);
    return token;
  }

  /**
   * Stores the rotated refresh token, conditionally on the generation that was redeemed. A failing store is
   * retried; if it still fails, the token is kept in this process so the user is not stranded on a replaced one.
   */
  private async storeRotation(
    grant: UserGrant,
    rotated: string | undefined,
    unsavedKey: string,
  ): Promise<void> {
    const sealed = rotated
      ? await this.deps.sealer.seal(rotated, {
          purpose: 'token-broker:refresh-token',
          service: grant.service,
          user_key: grant.userKey,
        })
      : undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        const outcome = await this.deps.grants.rotate(grant, sealed, this.now());
        this.unsaved.delete(unsavedKey);
        if (outcome === 'superseded') {
          this.deps.logger.warn('rotated refresh token not stored: the grant changed meanwhile', {
            serviceName: grant.service,
            userKey: grant.userKey,
          });
        }
        return;
      } catch (error) {
        if (attempt >= 2) {
          if (rotated) this.unsaved.set(unsavedKey, rotated);
          this.deps.logger.error('rotated refresh token not stored; kept in this process', {
            serviceName: grant.service,
            userKey: grant.userKey,
            error,
          });
          return;
        }
        await this.sleep(100 * 2 ** attempt);
      }
    }
  }

  /** The 401 for a user without a usable grant, with a fresh consent to send the user to. */
  private async consentRequired(
    name: string,
    userKey: string,
    reason: string,
    request: ConsentRequestContext,
  ): Promise<UserConsentRequiredError> {
    const consent = await this.deps.consent.start(name, userKey, request);
    return new UserConsentRequiredError(
      reason === 'not_connected'
        ? `user "${userKey}" has not authorized service "${name}": send the user to context.authorization_url`
        : `the authorization of user "${userKey}" for service "${name}" is no longer valid (${reason}): send the user to context.authorization_url`,
      {
        context: {
          reason,
          user: userKey,
          authorization_url: consent.authorizationUrl,
          state_expires_at: isoSeconds(consent.stateExpiresAt),
        },
      },
    );
  }
}

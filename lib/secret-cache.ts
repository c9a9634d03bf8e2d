import { LRUCache } from 'lru-cache';
import type { CallOptions } from './call-options';
import { type ClientCredential, credentialFromSecret } from './credentials/credential';
import type { SecretStore } from './secret-store';

export interface SecretCacheOptions {
  secrets: SecretStore;
  /** How long a credential read from the store is reused in this process. */
  ttlMs: number;
  /** At most this many credentials are held (least recently used go first). */
  maxEntries?: number;
  now?: () => number;
}

/**
 * The credentials of services, read from the secret store and reused for a while in this process, so that most
 * token requests need no Secrets Manager call. Bounded in count and age.
 */
export class SecretCache {
  private readonly secrets: SecretStore;
  private readonly credentials: LRUCache<string, ClientCredential>;
  private readonly ttlMs: number;

  constructor(options: SecretCacheOptions) {
    this.secrets = options.secrets;
    const now = options.now ?? Date.now;
    this.ttlMs = options.ttlMs;
    this.credentials = new LRUCache<string, ClientCredential>({
      max: options.maxEntries ?? 1000,
      // lru-cache reads ttl 0 as "forever"; a zero TTL here means "never reuse" (see credential()).
      ttl: Math.max(1, options.ttlMs),
      // The injected clock, checked on every read (no resolution window): expiry is testable with a fixed clock.
      perf: { now },
      ttlResolution: 0,
    });
  }

  /** The credential kept in secret `arn`; read from the store when not held, expired, or `fresh` is asked for. */
  async credential(arn: string, options: { fresh?: boolean } & CallOptions = {}): Promise<ClientCredential> {
    const held = options.fresh ? undefined : this.credentials.get(arn);
    if (held) return held;
    const credential = credentialFromSecret(await this.secrets.read(arn, { signal: options.signal }));
    if (this.ttlMs > 0) this.credentials.set(arn, credential);
    return credential;
  }
}

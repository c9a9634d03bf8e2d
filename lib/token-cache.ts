import type { AttributeValue, WriteRequest } from '@aws-sdk/client-dynamodb';
import type { CallOptions } from './call-options';
import { type DynamoDbOperations, isConditionalCheckFailure } from './dynamodb';
import type { IssuedToken } from './entra-token-client';
import { storeFailure } from './errors';
import { TOKEN_CACHE_TABLE } from './tables';
import type { TokenSealer } from './token-encryption';

/** Callers are never handed a token with less than this much validity left; it is also the TTL margin. */
export const EXPIRY_MARGIN_MS = 60_000;

/** Identifies one cached token: the service, the version of its configuration, and the scope. */
export interface CacheKey {
  service: string;
  version: string;
  scope: string;
}

/** A cached token; times are epoch milliseconds. */
export interface CachedToken {
  accessToken: string;
  scope: string;
  acquiredAt: number;
  expiresAt: number;
  /** From here on, the next request triggers one background refresh (refresh-ahead). */
  refreshAt: number;
  /** When a caller was last served this token (coarse: updated at most every few minutes); for scheduled refresh. */
  lastUsedAt?: number;
}

/** The cache entry of an issued token: refreshed at Entra's `refresh_in`, else at `refreshFraction` of its life. */
export function cachedTokenOf(issued: IssuedToken, scope: string, refreshFraction: number): CachedToken {
  const lifetimeMs = issued.expiresAt - issued.acquiredAt;
  const refreshAfterMs =
    issued.refreshIn !== undefined ? issued.refreshIn * 1000 : lifetimeMs * refreshFraction;
  return {
    accessToken: issued.accessToken,
    scope,
    acquiredAt: issued.acquiredAt,
    expiresAt: issued.expiresAt,
    refreshAt: issued.acquiredAt + refreshAfterMs,
  };
}

/** Where issued tokens are cached. The DynamoDB adapter below is the only production implementation. */
export interface TokenCache {
  /** The cached token if it is still valid for more than {@link EXPIRY_MARGIN_MS}; otherwise undefined. */
  get(key: CacheKey, options?: CallOptions): Promise<CachedToken | undefined>;
  /**
   * Stores the token for the key unless the cache already holds a newer one, or was cleared after this token was
   * asked for (its `acquiredAt`); returns whether it was written. Without `token.lastUsedAt` the stored
   * `last_used_at` is kept (a refresh is not a use).
   */
  put(key: CacheKey, token: CachedToken, options?: CallOptions): Promise<boolean>;
  /**
   * Removes every cached token of the service (all versions and scopes); returns how many. Leases, cool-downs and
   * throttles stay (lib/refresh-coordinator.ts). With `clearedAt`, the `keys` given keep a marker instead, so that
   * a token asked for before `clearedAt` and written later does not refill them.
   */
  clear(service: string, options?: ClearOptions & CallOptions): Promise<number>;
  /** Records that the token was served at `at` (only if the item still exists). */
  touch(key: CacheKey, at: number, options?: CallOptions): Promise<void>;
  /**
   * Reads all of a service's cached items in one request, before its version is known, so that a cache hit can
   * read the service and its token at the same time; the returned lookup answers like {@link get} (its KMS
   * calls bound by the same `options`).
   */
  lookup(service: string, options?: CallOptions): Promise<TokenLookup>;
}

/** What {@link TokenCache.clear} leaves behind. */
export interface ClearOptions {
  /** When the clear was asked for (epoch ms). */
  clearedAt?: number;
  /** Keys that keep a cleared marker (the service's current version and scopes). */
  keys?: CacheKey[];
}

/** How long a cleared marker refuses older tokens: longer than any token lives (Entra's CAE tokens: 28 h). */
const CLEARED_MARKER_MS = 30 * 60 * 60_000;

/** The cached items of one service, read at once; tokens are decrypted only when asked for. */
export interface TokenLookup {
  get(key: CacheKey, options?: CallOptions): Promise<CachedToken | undefined>;
}

/** The sort key of the cache item; leases and cool-downs of the same key live beside it (see lib/refresh-coordinator.ts). */
export const cacheSortKey = (key: CacheKey): string => `${key.version}#${key.scope}`;

/** Whether a token may still be handed out at `now`. */
export function isServable(token: Pick<CachedToken, 'expiresAt'>, now: number): boolean {
  return token.expiresAt - EXPIRY_MARGIN_MS > now;
}

export interface DynamoDbTokenCacheOptions {
  client: DynamoDbOperations;
  tableName: string;
  now?: () => number;
  /**
   * Encrypts each token before it is written (envelope encryption with KMS). The deployed handlers always pass
   * one; without it tokens are stored as plaintext (lib-level tests only).
   */
  sealer?: TokenSealer;
}

const BATCH_LIMIT = 25;

/** A token is sealed for exactly one service, configuration version and scope. */
const sealContextOf = (key: CacheKey) => ({ service: key.service, version: key.version, scope: key.scope });
const MAX_BATCH_ATTEMPTS = 5;

/**
 * TokenCache on a DynamoDB table (see lib/tables.ts). Each item carries a TTL attribute of expiry − 60 s so that
 * DynamoDB removes dead tokens; as TTL deletion runs lazily (hours late), reads check expiry themselves.
 */
export class DynamoDbTokenCache implements TokenCache {
  private readonly client: DynamoDbOperations;
  private readonly tableName: string;
  private readonly now: () => number;
  private readonly sealer?: TokenSealer;

  constructor(options: DynamoDbTokenCacheOptions) {
    this.client = options.client;
    this.tableName = options.tableName;
    this.now = options.now ?? Date.now;
    this.sealer = options.sealer;
  }

  /** The token of an item: opened when sealed; a plaintext item is ignored when tokens are sealed. */
  private async tokenOf(
    item: Record<string, AttributeValue>,
    key: CacheKey,
    options?: CallOptions,
  ): Promise<string | undefined> {
    if (!this.sealer) return item.access_token?.S;
    const ciphertext = item.sealed_token?.S;
    const encryptedKey = item.data_key?.S;
    if (!ciphertext || !encryptedKey) return undefined;
    return this.sealer.open({ ciphertext, encryptedKey }, sealContextOf(key), options);
  }

  private key(service: string, sk: string): Record<string, AttributeValue> {
    return { [TOKEN_CACHE_TABLE.partitionKey]: { S: service }, [TOKEN_CACHE_TABLE.sortKey]: { S: sk } };
  }

  async get(key: CacheKey, options?: CallOptions): Promise<CachedToken | undefined> {
    let item: Record<string, AttributeValue> | undefined;
    try {
      const out = await this.client.getItem(
        {
          TableName: this.tableName,
          Key: this.key(key.service, cacheSortKey(key)),
          ConsistentRead: true,
        },
        options,
      );
      item = out.Item;
    } catch (error) {
      throw storeFailure('token cache read failed', error);
    }
    return item ? this.decode(item, key, options) : undefined;
  }

  async lookup(service: string, options?: CallOptions): Promise<TokenLookup> {
    let items: Record<string, AttributeValue>[];
    let complete: boolean;
    try {
      const out = await this.client.query(
        {
          TableName: this.tableName,
          KeyConditionExpression: '#pk = :service',
          ExpressionAttributeNames: { '#pk': TOKEN_CACHE_TABLE.partitionKey },
          ExpressionAttributeValues: { ':service': { S: service } },
          ConsistentRead: true,
        },
        options,
      );
      items = out.Items ?? [];
      complete = out.LastEvaluatedKey === undefined;
    } catch (error) {
      throw storeFailure('token cache read failed', error);
    }
    const bySortKey = new Map(items.map((item) => [item[TOKEN_CACHE_TABLE.sortKey]?.S, item]));
    return {
      get: async (key) => {
        const item = bySortKey.get(cacheSortKey(key));
        if (item) return this.decode(item, key, options);
        // A partition larger than one page (many old versions or scopes): ask for the one item.
        return complete ? undefined : this.get(key, options);
      },
    };
  }

  /** A cache item as a servable token, or undefined when expired or unreadable. */
  private async decode(
    item: Record<string, AttributeValue>,
    key: CacheKey,
    options?: CallOptions,
  ): Promise<CachedToken | undefined> {
    const expiresAt = Number(item.expires_at?.N);
    // Expired items are skipped before any decryption.
    if (!Number.isFinite(expiresAt) || !isServable({ expiresAt }, this.now())) return undefined;
    const token: CachedToken = {
      accessToken: (await this.tokenOf(item, key, options)) ?? '',
      scope: item.scope?.S ?? key.scope,
      acquiredAt: Number(item.acquired_at?.N),
      expiresAt,
      refreshAt: Number(item.refresh_at?.N ?? item.expires_at?.N),
      lastUsedAt: item.last_used_at?.N !== undefined ? Number(item.last_used_at.N) : undefined,
    };
    if (!token.accessToken || !Number.isFinite(token.acquiredAt)) return undefined;
    return token;
  }

  async put(key: CacheKey, token: CachedToken, options?: CallOptions): Promise<boolean> {
    const secretPart: Record<string, AttributeValue> = this.sealer
      ? await this.sealer.seal(token.accessToken, sealContextOf(key), options).then((sealed) => ({
          ':sealed': { S: sealed.ciphertext },
          ':dataKey': { S: sealed.encryptedKey },
        }))
      : { ':token': { S: token.accessToken } };
    const tokenSet = this.sealer ? 'sealed_token = :sealed, data_key = :dataKey' : 'access_token = :token';
    try {
      // Timeline: A asks Entra at t1, B at t2 > t1 (A's lease expired, or A was frozen). B writes first; A's write
      // finds acquired_at = t2 > t1 and is refused. A clear at t3 leaves cleared_at = t3: A's token from t1 < t3
      // does not refill the cache, while a token asked for after the clear does.
      await this.client.updateItem(
        {
          TableName: this.tableName,
          Key: this.key(key.service, cacheSortKey(key)),
          UpdateExpression: `SET ${tokenSet}, #scope = :scope, acquired_at = :acquired, expires_at = :expires, refresh_at = :refresh, last_used_at = ${token.lastUsedAt === undefined ? 'if_not_exists(last_used_at, :acquired)' : ':used'}, #ttl = :ttl REMOVE cleared_at`,
          ConditionExpression:
            '(attribute_not_exists(acquired_at) OR acquired_at <= :acquired) AND (attribute_not_exists(cleared_at) OR cleared_at <= :acquired)',
          ExpressionAttributeNames: { '#scope': 'scope', '#ttl': TOKEN_CACHE_TABLE.ttlAttribute },
          ExpressionAttributeValues: {
            ...secretPart,
            ':scope': { S: token.scope },
            ':acquired': { N: String(token.acquiredAt) },
            ':expires': { N: String(token.expiresAt) },
            ':refresh': { N: String(token.refreshAt) },
            ...(token.lastUsedAt === undefined ? {} : { ':used': { N: String(token.lastUsedAt) } }),
            ':ttl': { N: String(Math.floor((token.expiresAt - EXPIRY_MARGIN_MS) / 1000)) },
          },
        },
        options,
      );
      return true;
    } catch (error) {
      if (isConditionalCheckFailure(error)) return false;
      throw storeFailure('token cache write failed', error);
    }
  }

  async touch(key: CacheKey, at: number, options?: CallOptions): Promise<void> {
    try {
      await this.client.updateItem(
        {
          TableName: this.tableName,
          Key: this.key(key.service, cacheSortKey(key)),
          UpdateExpression: 'SET #used = :at',
          ConditionExpression: 'attribute_exists(#pk)',
          ExpressionAttributeNames: { '#used': 'last_used_at', '#pk': TOKEN_CACHE_TABLE.partitionKey },
          ExpressionAttributeValues: { ':at': { N: String(at) } },
        },
        options,
      );
    } catch (error) {
      // Replaced or cleared meanwhile: nothing to record.
      if (isConditionalCheckFailure(error)) return;
      throw storeFailure('token cache touch failed', error);
    }
  }

  async clear(service: string, options: ClearOptions & CallOptions = {}): Promise<number> {
    const marked = new Set((options.keys ?? []).map(cacheSortKey));
    const tokens: Record<string, AttributeValue>[] = [];
    try {
      let startKey: Record<string, AttributeValue> | undefined;
      do {
        const out = await this.client.query(
          {
            TableName: this.tableName,
            KeyConditionExpression: '#pk = :service',
            ExpressionAttributeNames: {
              '#pk': TOKEN_CACHE_TABLE.partitionKey,
              '#sk': TOKEN_CACHE_TABLE.sortKey,
            },
            ExpressionAttributeValues: { ':service': { S: service } },
            ProjectionExpression: '#pk, #sk, expires_at',
            ConsistentRead: true,
            ExclusiveStartKey: startKey,
          },
          options,
        );
        // Token items only: leases, cool-downs and throttles outlive a clear.
        for (const item of out.Items ?? []) {
          if (item.expires_at !== undefined) tokens.push(item);
        }
        startKey = out.LastEvaluatedKey;
      } while (startKey);

      if (options.clearedAt !== undefined) {
        for (const key of options.keys ?? []) await this.markCleared(key, options.clearedAt, options);
      }
      const deletes = tokens.filter((item) => !marked.has(item[TOKEN_CACHE_TABLE.sortKey]?.S ?? ''));
      for (let i = 0; i < deletes.length; i += BATCH_LIMIT) {
        let pending: WriteRequest[] = deletes.slice(i, i + BATCH_LIMIT).map((item) => ({
          DeleteRequest: {
            Key: {
              [TOKEN_CACHE_TABLE.partitionKey]: item[TOKEN_CACHE_TABLE.partitionKey] as AttributeValue,
              [TOKEN_CACHE_TABLE.sortKey]: item[TOKEN_CACHE_TABLE.sortKey] as AttributeValue,
            },
          },
        }));
        for (let attempt = 0; pending.length > 0; attempt++) {
          if (attempt === MAX_BATCH_ATTEMPTS) throw new Error('unprocessed deletes left after retries');
          const out = await this.client.batchWriteItem(
            { RequestItems: { [this.tableName]: pending } },
            options,
          );
          pending = out.UnprocessedItems?.[this.tableName] ?? [];
          if (pending.length > 0) await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
        }
      }
    } catch (error) {
      throw storeFailure('token cache clear failed', error);
    }
    return tokens.length;
  }

  /** Replaces the key's item with a cleared marker: no token, and `cleared_at` for {@link put}'s condition. */
  private async markCleared(key: CacheKey, clearedAt: number, options?: CallOptions): Promise<void> {
    await this.client.putItem(
      {
        TableName: this.tableName,
        Item: {
          ...this.key(key.service, cacheSortKey(key)),
          cleared_at: { N: String(clearedAt) },
          [TOKEN_CACHE_TABLE.ttlAttribute]: { N: String(Math.ceil((clearedAt + CLEARED_MARKER_MS) / 1000)) },
        },
      },
      options,
    );
  }
}

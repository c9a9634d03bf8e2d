import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { type DynamoDbOperations, isConditionalCheckFailure } from '../dynamodb';
import { StoreError } from '../errors';
import { USER_GRANTS_TABLE } from '../tables';
import type { SealedValue } from './sealer';

/** Who the user is, from the validated id_token. */
export interface UserIdentity {
  oid: string;
  tid: string;
  preferredUsername?: string;
}

/** A user's delegated grant: the sealed refresh token and who it belongs to. */
export interface UserGrant extends UserIdentity {
  service: string;
  userKey: string;
  /** Random per consent: cached tokens and cool-downs of an earlier consent are never reused. */
  grantId: string;
  /** Increases with every stored rotation; the condition of the next rotation. */
  generation: number;
  refreshToken: SealedValue;
  /** Epoch milliseconds. */
  connectedAt: number;
  lastRefreshedAt?: number;
}

/** What the rotation found. */
export type RotationOutcome = 'stored' | 'superseded';

/**
 * The vault of delegated refresh tokens, one item per (service, user_key). Rotation is a conditional update on
 * `generation`, so a refresh token redeemed from a stale read can never overwrite a newer one.
 */
export class DynamoDbUserGrantStore {
  private readonly client: DynamoDbOperations;
  private readonly tableName: string;

  constructor(options: { client: DynamoDbOperations; tableName: string }) {
    this.client = options.client;
    this.tableName = options.tableName;
  }

  private key(service: string, userKey: string): Record<string, AttributeValue> {
    return {
      [USER_GRANTS_TABLE.partitionKey]: { S: service },
      [USER_GRANTS_TABLE.sortKey]: { S: userKey },
    };
  }

  /** The grant of a user, read consistently; undefined when the user never consented or was forgotten. */
  async get(service: string, userKey: string): Promise<UserGrant | undefined> {
    try {
      const out = await this.client.getItem({
        TableName: this.tableName,
        Key: this.key(service, userKey),
        ConsistentRead: true,
      });
      return out.Item ? decode(out.Item) : undefined;
    } catch (error) {
      throw new StoreError('user grant read failed', { cause: error });
    }
  }

  /** Stores a new consent, replacing any earlier grant of the same user. */
  async put(grant: UserGrant): Promise<void> {
    try {
      await this.client.putItem({ TableName: this.tableName, Item: encode(grant) });
    } catch (error) {
      throw new StoreError('user grant write failed', { cause: error });
    }
  }

  /**
   * Stores a rotated refresh token if the grant is still the one that was redeemed (same grantId and
   * generation); 'superseded' when a newer rotation, a new consent or a removal came first.
   */
  async rotate(
    grant: Pick<UserGrant, 'service' | 'userKey' | 'grantId' | 'generation'>,
    refreshToken: SealedValue | undefined,
    at: number,
  ): Promise<RotationOutcome> {
    const set = ['#gen = :next', '#refreshed = :at'];
    const values: Record<string, AttributeValue> = {
      ':expected': { N: String(grant.generation) },
      ':next': { N: String(grant.generation + 1) },
      ':grant': { S: grant.grantId },
      ':at': { N: String(at) },
    };
    if (refreshToken) {
      set.push('#rt = :rt', '#dk = :dk');
      values[':rt'] = { S: refreshToken.ciphertext };
      values[':dk'] = { S: refreshToken.encryptedKey };
    }
    try {
      await this.client.updateItem({
        TableName: this.tableName,
        Key: this.key(grant.service, grant.userKey),
        UpdateExpression: `SET ${set.join(', ')}`,
        ConditionExpression: '#gen = :expected AND #grant = :grant',
        ExpressionAttributeNames: {
          '#gen': 'generation',
          '#grant': 'grant_id',
          '#refreshed': 'last_refreshed_at',
          ...(refreshToken ? { '#rt': 'sealed_refresh_token', '#dk': 'data_key' } : {}),
        },
        ExpressionAttributeValues: values,
      });
      return 'stored';
    } catch (error) {
      if (isConditionalCheckFailure(error)) return 'superseded';
      throw new StoreError('user grant rotation failed', { cause: error });
    }
  }

  /** Removes the grant; with `grantId`, only if it is still that consent's (a dead token must not remove a newer one). */
  async delete(service: string, userKey: string, grantId?: string): Promise<boolean> {
    try {
      const out = await this.client.deleteItem({
        TableName: this.tableName,
        Key: this.key(service, userKey),
        ReturnValues: 'ALL_OLD',
        ...(grantId !== undefined
          ? {
              ConditionExpression: '#grant = :grant',
              ExpressionAttributeNames: { '#grant': 'grant_id' },
              ExpressionAttributeValues: { ':grant': { S: grantId } },
            }
          : {}),
      });
      return out.Attributes !== undefined;
    } catch (error) {
      if (isConditionalCheckFailure(error)) return false;
      throw new StoreError('user grant removal failed', { cause: error });
    }
  }

  /** Every connected user of a service (refresh tokens stay sealed: listings never open them). */
  async list(service: string): Promise<UserGrant[]> {
    const grants: UserGrant[] = [];
    try {
      let startKey: Record<string, AttributeValue> | undefined;
      do {
        const out = await this.client.query({
          TableName: this.tableName,
          KeyConditionExpression: '#pk = :service',
          ExpressionAttributeNames: { '#pk': USER_GRANTS_TABLE.partitionKey },
          ExpressionAttributeValues: { ':service': { S: service } },
          ConsistentRead: true,
          ExclusiveStartKey: startKey,
        });
        for (const item of out.Items ?? []) {
          const grant = decode(item);
          if (grant) grants.push(grant);
        }
        startKey = out.LastEvaluatedKey;
      } while (startKey);
    } catch (error) {
      throw new StoreError('user grant listing failed', { cause: error });
    }
    return grants;
  }
}

function encode(grant: UserGrant): Record<string, AttributeValue> {
  return {
    [USER_GRANTS_TABLE.partitionKey]: { S: grant.service },
    [USER_GRANTS_TABLE.sortKey]: { S: grant.userKey },
    grant_id: { S: grant.grantId },
    generation: { N: String(grant.generation) },
    sealed_refresh_token: { S: grant.refreshToken.ciphertext },
    data_key: { S: grant.refreshToken.encryptedKey },
    oid: { S: grant.oid },
    tid: { S: grant.tid },
    ...(grant.preferredUsername !== undefined ? { preferred_username: { S: grant.preferredUsername } } : {}),
    connected_at: { N: String(grant.connectedAt) },
    ...(grant.lastRefreshedAt !== undefined
      ? { last_refreshed_at: { N: String(grant.lastRefreshedAt) } }
      : {}),
  };
}

function decode(item: Record<string, AttributeValue>): UserGrant | undefined {
  const ciphertext = item.sealed_refresh_token?.S;
  const encryptedKey = item.data_key?.S;
  const grantId = item.grant_id?.S;
  if (!ciphertext || !encryptedKey || !grantId) return undefined;
  return {
    service: item[USER_GRANTS_TABLE.partitionKey]?.S ?? '',
    userKey: item[USER_GRANTS_TABLE.sortKey]?.S ?? '',
    grantId,
    generation: Number(item.generation?.N ?? 0),
    refreshToken: { ciphertext, encryptedKey },
    oid: item.oid?.S ?? '',
    tid: item.tid?.S ?? '',
    preferredUsername: item.preferred_username?.S,
    connectedAt: Number(item.connected_at?.N ?? 0),
    lastRefreshedAt: item.last_refreshed_at?.N !== undefined ? Number(item.last_refreshed_at.N) : undefined,
  };
}

import { createHash } from 'node:crypto';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { type DynamoDbOperations, isConditionalCheckFailure } from '../dynamodb';
import { StoreError } from '../errors';
import { USER_GRANTS_TABLE } from '../tables';
import type { SealedValue } from './sealer';

/** A consent in progress: everything the callback needs, bound to the service, the user_key and the caller. */
export interface ConsentState {
  service: string;
  userKey: string;
  /** Who started the consent (IAM principal ARN or local caller id); for audit lines. */
  caller: string;
  /** The PKCE verifier, sealed for (service, user_key). */
  verifier: SealedValue;
  nonce: string;
  redirectUri: string;
  returnTo?: string;
  /** Epoch milliseconds. */
  createdAt: number;
  expiresAt: number;
}

/** What consuming a state found. */
export type ConsumedState = { found: true; state: ConsentState } | { found: false };

/**
 * Pending consent states. A state is stored by its SHA-256 (the state itself is a bearer secret in a URL) and
 * consumed once: the delete is conditional and returns the old item, so of two callbacks with the same state
 * exactly one gets it.
 */
export class DynamoDbConsentStateStore {
  private readonly client: DynamoDbOperations;
  private readonly tableName: string;

  constructor(options: { client: DynamoDbOperations; tableName: string }) {
    this.client = options.client;
    this.tableName = options.tableName;
  }

  private key(state: string): Record<string, AttributeValue> {
    const digest = createHash('sha256').update(state).digest('base64url');
    return {
      [USER_GRANTS_TABLE.partitionKey]: { S: `state#${digest}` },
      [USER_GRANTS_TABLE.sortKey]: { S: 'state' },
    };
  }

  /** Stores a new state; fails (StoreError) if the same state somehow exists already. */
  async put(state: string, record: ConsentState): Promise<void> {
    try {
      await this.client.putItem({
        TableName: this.tableName,
        Item: {
          ...this.key(state),
          record: { S: JSON.stringify(record) },
          [USER_GRANTS_TABLE.ttlAttribute]: { N: String(Math.ceil(record.expiresAt / 1000) + 60) },
        },
        ConditionExpression: 'attribute_not_exists(#pk)',
        ExpressionAttributeNames: { '#pk': USER_GRANTS_TABLE.partitionKey },
      });
    } catch (error) {
      throw new StoreError('consent state write failed', { cause: error });
    }
  }

  /**
   * Removes the state and returns what it held, or `found: false` when it does not exist (never issued, already
   * consumed, or removed by TTL). Expiry is the caller's to judge: an expired state is consumed all the same.
   */
  async consume(state: string): Promise<ConsumedState> {
    try {
      // Timeline: callbacks A and B carry the same state. A's delete matches and returns the item; B's delete
      // finds nothing, fails the condition and B is told the state was already used.
      const out = await this.client.deleteItem({
        TableName: this.tableName,
        Key: this.key(state),
        ConditionExpression: 'attribute_exists(#pk)',
        ExpressionAttributeNames: { '#pk': USER_GRANTS_TABLE.partitionKey },
        ReturnValues: 'ALL_OLD',
      });
      const text = out.Attributes?.record?.S;
      if (!text) return { found: false };
      return { found: true, state: JSON.parse(text) as ConsentState };
    } catch (error) {
      if (isConditionalCheckFailure(error)) return { found: false };
      throw new StoreError('consent state read failed', { cause: error });
    }
  }
}

import type {
  BatchWriteItemCommandInput,
  BatchWriteItemCommandOutput,
  DeleteItemCommandInput,
  DeleteItemCommandOutput,
  GetItemCommandInput,
  GetItemCommandOutput,
  PutItemCommandInput,
  PutItemCommandOutput,
  QueryCommandInput,
  QueryCommandOutput,
  ScanCommandInput,
  ScanCommandOutput,
  UpdateItemCommandInput,
  UpdateItemCommandOutput,
} from '@aws-sdk/client-dynamodb';
import type { AwsAnswer, CallOptions } from './call-options';
import { isAwsError } from './errors';

/**
 * The DynamoDB operations the broker's store adapters use (lib/token-cache.ts, service-registry.ts,
 * refresh-coordinator.ts, create-journal.ts, authorization-code/), with DynamoDB's own wire shapes (AttributeValue
 * maps; the SDK's input and output types). The one production adapter is functions/aws-json.ts's JSON-protocol
 * client (functions/aws-clients.ts builds it), which also runs in local mode and in the tests; lib never builds it.
 * Every operation rejects with an error named by DynamoDB's error type (see {@link isConditionalCheckFailure}), a
 * `TimeoutError` when the call's time limit passed, or an `AbortError` when `options.signal` aborted it.
 */
export interface DynamoDbOperations {
  getItem(input: GetItemCommandInput, options?: CallOptions): Promise<AwsAnswer<GetItemCommandOutput>>;
  putItem(input: PutItemCommandInput, options?: CallOptions): Promise<AwsAnswer<PutItemCommandOutput>>;
  updateItem(
    input: UpdateItemCommandInput,
    options?: CallOptions,
  ): Promise<AwsAnswer<UpdateItemCommandOutput>>;
  deleteItem(
    input: DeleteItemCommandInput,
    options?: CallOptions,
  ): Promise<AwsAnswer<DeleteItemCommandOutput>>;
  query(input: QueryCommandInput, options?: CallOptions): Promise<AwsAnswer<QueryCommandOutput>>;
  scan(input: ScanCommandInput, options?: CallOptions): Promise<AwsAnswer<ScanCommandOutput>>;
  batchWriteItem(
    input: BatchWriteItemCommandInput,
    options?: CallOptions,
  ): Promise<AwsAnswer<BatchWriteItemCommandOutput>>;
}

/** Whether a conditional write or delete was refused because its condition did not hold. */
export function isConditionalCheckFailure(error: unknown): boolean {
  return isAwsError(error, 'ConditionalCheckFailedException');
}

import type {
  CreateKeyCommandInput,
  DescribeKeyCommandInput,
  GetPublicKeyCommandInput,
  ScheduleKeyDeletionCommandInput,
  SignCommandInput,
} from '@aws-sdk/client-kms';
import { BROKER_INSTANCE_TAG, BROKER_KEY_TAG, KMS_TAG_VALUE_PATTERN } from './kms-tags';

export { BROKER_INSTANCE_TAG, BROKER_KEY_TAG, KMS_TAG_VALUE_PATTERN } from './kms-tags';

/** The RSA key sizes a `kms_certificate` service may ask for. */
export type SigningKeySpec = 'RSA_2048' | 'RSA_3072';

/** KMS signing algorithms the broker uses: PSS for client assertions (PS256), PKCS#1 v1.5 for certificates. */
export type SigningAlgorithm = 'RSASSA_PSS_SHA_256' | 'RSASSA_PKCS1_V1_5_SHA_256';

/** What DescribeKey says about a key: enough to tell whether it can sign client assertions. */
export interface SigningKeyDescription {
  keySpec?: string;
  keyUsage?: string;
  /** KMS's KeyState: only `Enabled` keys sign. */
  keyState?: string;
}

/**
 * Asymmetric keys whose private half never leaves the key store (KMS). The broker creates them, reads their
 * public key, asks them to sign, and schedules their deletion; it never sees the private key.
 */
export interface SigningKeys {
  /** Creates an RSA SIGN_VERIFY key tagged for this broker and for `service`, and returns its ARN. */
  create(service: string, spec: SigningKeySpec): Promise<string>;
  /** The key's public key, DER SubjectPublicKeyInfo. */
  publicKey(keyArn: string): Promise<Uint8Array>;
  /** Signs `message` (the whole message, not a digest). */
  sign(keyArn: string, message: Uint8Array, algorithm: SigningAlgorithm): Promise<Uint8Array>;
  /** Schedules the key's deletion after KMS's waiting period. */
  scheduleDeletion(keyArn: string, pendingWindowInDays: number): Promise<void>;
  /** The key's spec, usage and state (DescribeKey). */
  describe(keyArn: string): Promise<SigningKeyDescription>;
}

/**
 * The KMS operations SigningKeys uses, with the SDK's input types (types only: the adapter in functions/ serves
 * them, so that no function loads the SDK for them). Blobs are bytes here.
 */
export interface KmsSigningOperations {
  createKey(input: CreateKeyCommandInput): Promise<{ KeyMetadata?: { Arn?: string } }>;
  getPublicKey(input: GetPublicKeyCommandInput): Promise<{ PublicKey?: Uint8Array; KeyUsage?: string }>;
  sign(input: SignCommandInput & { Message: Uint8Array }): Promise<{ Signature?: Uint8Array }>;
  describeKey(
    input: DescribeKeyCommandInput,
  ): Promise<{ KeyMetadata?: { KeySpec?: string; KeyUsage?: string; KeyState?: string } }>;
  scheduleKeyDeletion(input: ScheduleKeyDeletionCommandInput): Promise<unknown>;
}

/** SigningKeys on AWS KMS. */
export class KmsSigningKeys implements SigningKeys {
  private readonly client: KmsSigningOperations;
  private readonly brokerId: string;

  /**
   * @param options.brokerId this broker's instance id, the value of the {@link BROKER_INSTANCE_TAG} tag on every
   *   key it creates (the Lambda functions get it as TOKEN_BROKER_INSTANCE_ID).
   */
  constructor(client: KmsSigningOperations, options: { brokerId: string }) {
    if (!KMS_TAG_VALUE_PATTERN.test(options.brokerId)) {
      throw new Error(`KmsSigningKeys: brokerId must be a KMS tag value (${KMS_TAG_VALUE_PATTERN})`);
    }
    this.client = client;
    this.brokerId = options.brokerId;
  }

  async create(service: string, spec: SigningKeySpec): Promise<string> {
    const { KeyMetadata } = await this.client.createKey({
      KeySpec: spec,
      KeyUsage: 'SIGN_VERIFY',
      Description: `Token Broker: signs client assertions of service ${service}`,
      // Both tags in the request: IAM allows the broker's CreateKey only with exactly these keys.
      Tags: [
        { TagKey: BROKER_INSTANCE_TAG, TagValue: this.brokerId },
        { TagKey: BROKER_KEY_TAG, TagValue: service },
      ],
    });
    if (!KeyMetadata?.Arn) throw new Error('KMS CreateKey returned no key ARN');
    return KeyMetadata.Arn;
  }

  async publicKey(keyArn: string): Promise<Uint8Array> {
    const { PublicKey, KeyUsage } = await this.client.getPublicKey({ KeyId: keyArn });
    if (!PublicKey || KeyUsage !== 'SIGN_VERIFY') {
      throw new Error(`KMS key ${keyArn} is not an asymmetric SIGN_VERIFY key`);
    }
    return PublicKey;
  }

  async sign(keyArn: string, message: Uint8Array, algorithm: SigningAlgorithm): Promise<Uint8Array> {
    const { Signature } = await this.client.sign({
      KeyId: keyArn,
      Message: message,
      MessageType: 'RAW',
      SigningAlgorithm: algorithm,
    });
    if (!Signature) throw new Error('KMS Sign returned no signature');
    return Signature;
  }

  async describe(keyArn: string): Promise<SigningKeyDescription> {
    const { KeyMetadata } = await this.client.describeKey({ KeyId: keyArn });
    return {
      keySpec: KeyMetadata?.KeySpec,
      keyUsage: KeyMetadata?.KeyUsage,
      keyState: KeyMetadata?.KeyState,
    };
  }

  async scheduleDeletion(keyArn: string, pendingWindowInDays: number): Promise<void> {
    await this.client.scheduleKeyDeletion({ KeyId: keyArn, PendingWindowInDays: pendingWindowInDays });
  }
}

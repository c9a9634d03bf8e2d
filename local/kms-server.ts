/**
 * A local AWS KMS that speaks the service's real wire protocol (AWS JSON 1.1, `X-Amz-Target: TrentService.*`), so
 * local mode and the integration tests run the broker's envelope encryption through the real @aws-sdk/client-kms
 * client unchanged. It covers the operations the broker uses, with KMS's error types and the members they are sent
 * with: GenerateDataKey and Decrypt (lib/token-encryption.ts), and CreateKey, DescribeKey and CreateAlias for
 * `ensureLocalKey` below. Any other member is refused, naming it (local/aws-json-request.ts). Asymmetric signing
 * keys (CreateKey of RSA SIGN_VERIFY keys, Sign, Verify, GetPublicKey, ScheduleKeyDeletion, ListResourceTags) come
 * from local/kms-asymmetric.ts, for the broker's kms_certificate credential.
 *
 * Each symmetric key (SYMMETRIC_DEFAULT) has 32 random bytes of key material, and a ciphertext is this
 * server's own format (see `sealUnderKey`): like a real KMS ciphertext it names its key, so Decrypt needs no KeyId,
 * and it is bound to its encryption context, so Decrypt under any other context fails.
 *
 * Storage: one JSON file per key (`key-<key id>.json`) and per alias (`alias-<hash of the name>.json`) under
 * `${dataDir}/kms/`, read on every request. Keys and aliases are never modified once written: a key file appears
 * with a rename, an alias file with a hard link that fails if the alias exists, so every file is complete when it
 * becomes visible and exactly one of two concurrent CreateAlias calls wins, also across processes. Several
 * processes, each embedding its own server over the same dataDir, therefore share one set of keys.
 *
 * Local use only: key material is stored unencrypted (files 0600 in a 0700 directory) and requests are not
 * authenticated. SigV4 signatures are deliberately not verified, so any credentials work. Key material, plaintexts
 * and data keys never appear in logs or error messages.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, randomUUID } from 'node:crypto';
import path from 'node:path';
import {
  AlreadyExistsException,
  CreateAliasCommand,
  CreateKeyCommand,
  DescribeKeyCommand,
  type KMSClient,
  NotFoundException,
} from '@aws-sdk/client-kms';
import { modelValidationError, operationsRefusing, type RequestMembers } from './aws-json-request';
import {
  AwsJsonError,
  type AwsJsonOperation,
  type JsonObject,
  type LocalServerOptions,
  type LocalServiceContext,
  type RunningAwsJsonServer,
  startLocalAwsServer,
} from './aws-json-server';
import { withAsymmetricKeys } from './kms-asymmetric';
import { createJsonFileOnce, LocalStoreError, readJsonFile, writeJsonFileAtomically } from './private-files';

/** Where the store lives (`kms/` inside `dataDir`; share it to share the keys), and what goes into ARNs. */
export type KmsServerOptions = LocalServerOptions;
/** `url` goes to the SDK as `endpoint` (or AWS_ENDPOINT_URL_KMS); close() leaves the files. */
export type RunningKmsServer = RunningAwsJsonServer;

/** The alias local mode gives the key that envelope-encrypts cached tokens. */
export const LOCAL_KMS_KEY_ALIAS = 'alias/token-broker-local';

const MASTER_KEY_BYTES = 32;
const KEY_ID_BYTES = 16;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** First byte of every ciphertext, so that a later format can be told apart. */
const CIPHERTEXT_FORMAT = 1;
const HEADER_BYTES = 1 + KEY_ID_BYTES;
/** KMS's quota: Decrypt takes up to 6144 bytes of ciphertext. */
const MAX_CIPHERTEXT_BYTES = 6144;
const DATA_KEY_SPEC_BYTES = { AES_256: 32, AES_128: 16 } as const;
type DataKeySpec = keyof typeof DATA_KEY_SPEC_BYTES;

const SYMMETRIC_DEFAULT = 'SYMMETRIC_DEFAULT';
const KEY_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** The AliasName pattern of the KMS model; the `alias/` prefix is checked separately, as KMS does. */
const ALIAS_NAME_PATTERN = /^[a-zA-Z0-9:/_-]+$/;
/** Errors reach the caller in the AWS JSON error shape; their messages never contain key material. */
const kmsError = (errorType: string, message: string) => new AwsJsonError(errorType, message);

/** KMS says nothing about why a ciphertext was refused: wrong context, tampering and garbage look alike. */
const invalidCiphertext = () => kmsError('InvalidCiphertextException', 'The ciphertext is invalid.');
const invalidKeyId = (keyId: string) => kmsError('NotFoundException', `Invalid keyId ${keyId}`);
const unsupported = (what: string) =>
  kmsError('UnsupportedOperationException', `${what} is not supported by this local KMS server.`);

/** One key file. Dates are epoch milliseconds. */
interface StoredKey {
  formatVersion: 1;
  keyId: string;
  arn: string;
  description: string;
  creationDate: number;
  /** The key's 32 bytes of AES-256 key material, base64. */
  keyMaterial: string;
}

/** One alias file. */
interface StoredAlias {
  formatVersion: 1;
  aliasName: string;
  aliasArn: string;
  targetKeyId: string;
  creationDate: number;
}

/** A key file's contents, checked, with its key material decoded. */
interface KmsKey {
  stored: StoredKey;
  material: Buffer;
}

type EncryptionContext = Record<string, string>;

/**
 * The key and alias files of one dataDir. Nothing is cached: every call reads the disk, so keys and aliases
 * created by other processes are seen at once.
 */
class KmsFileStore {
  constructor(
    private readonly directory: string,
    private readonly arnPrefix: string,
  ) {}

  keyArn(keyId: string): string {
    return `${this.arnPrefix}key/${keyId}`;
  }

  aliasArn(aliasName: string): string {
    return `${this.arnPrefix}${aliasName}`;
  }

  private keyFile(keyId: string): string {
    return path.join(this.directory, `key-${keyId}.json`);
  }

  /** Alias names contain slashes; a hash makes a flat, fixed-length file name of one. */
  private aliasFile(aliasName: string): string {
    return path.join(this.directory, `alias-${createHash('sha256').update(aliasName).digest('hex')}.json`);
  }

  async readKey(keyId: string): Promise<KmsKey | undefined> {
    const stored = await readJsonFile<StoredKey>(this.keyFile(keyId));
    if (!stored) return undefined;
    const material =
      typeof stored.keyMaterial === 'string' ? Buffer.from(stored.keyMaterial, 'base64') : Buffer.alloc(0);
    if (stored.formatVersion !== 1 || stored.keyId !== keyId || material.length !== MASTER_KEY_BYTES) {
      throw new LocalStoreError(`key file of ${keyId} is not a key of this server's format`);
    }
    return { stored, material };
  }

  async readAlias(aliasName: string): Promise<StoredAlias | undefined> {
    const stored = await readJsonFile<StoredAlias>(this.aliasFile(aliasName));
    if (stored && (stored.formatVersion !== 1 || stored.aliasName !== aliasName)) {
      throw new LocalStoreError(`alias file of ${aliasName} is not an alias of this server's format`);
    }
    return stored;
  }

  /** Key ids are fresh UUIDs, so a key file never replaces another; the rename only makes it appear whole. */
  async writeKey(key: StoredKey): Promise<void> {
    await writeJsonFileAtomically(this.keyFile(key.keyId), key);
  }

  /** Creates the alias unless one of that name exists (also in another process), and says whether it did. */
  async createAlias(alias: StoredAlias): Promise<boolean> {
    return createJsonFileOnce(this.aliasFile(alias.aliasName), alias);
  }

  async keyById(keyId: string): Promise<KmsKey> {
    const key = await this.readKey(keyId);
    if (!key) throw kmsError('NotFoundException', `Key '${this.keyArn(keyId)}' does not exist`);
    return key;
  }

  private async keyByAlias(aliasName: string): Promise<KmsKey> {
    const alias = await this.readAlias(aliasName);
    if (!alias) throw kmsError('NotFoundException', `Alias ${this.aliasArn(aliasName)} is not found.`);
    return this.keyById(alias.targetKeyId);
  }

  /**
   * Finds a key by KeyId: its id, its ARN, or (where `allowAlias`) an alias name or alias ARN. ARNs of another
   * region or account name nothing here.
   */
  async resolve(keyIdentifier: string, allowAlias = true): Promise<KmsKey> {
    if (keyIdentifier.startsWith('arn:')) {
      if (!keyIdentifier.startsWith(this.arnPrefix)) throw invalidKeyId(keyIdentifier);
      const resource = keyIdentifier.slice(this.arnPrefix.length);
      if (resource.startsWith('key/') && KEY_ID_PATTERN.test(resource.slice('key/'.length))) {
        return this.keyById(resource.slice('key/'.length));
      }
      if (allowAlias && resource.startsWith('alias/')) return this.keyByAlias(resource);
      throw invalidKeyId(keyIdentifier);
    }
    if (keyIdentifier.startsWith('alias/') && allowAlias) return this.keyByAlias(keyIdentifier);
    if (KEY_ID_PATTERN.test(keyIdentifier)) return this.keyById(keyIdentifier);
    throw invalidKeyId(keyIdentifier);
  }
}

/**
 * The encryption context in a canonical form: its pairs sorted by key, as JSON, which is unambiguous whatever
 * the keys and values contain. KMS likewise treats a context as an unordered map.
 */
function canonicalContext(context: EncryptionContext): Buffer {
  const pairs = Object.keys(context)
    .sort()
    .map((key) => [key, context[key]]);
  return Buffer.from(JSON.stringify(pairs), 'utf8');
}

function keyIdBytes(keyId: string): Buffer {
  return Buffer.from(keyId.replaceAll('-', ''), 'hex');
}

function keyIdFromBytes(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join('-');
}

/**
 * This server's ciphertext: format byte (1), key id (16 bytes), IV (12), AES-256-GCM ciphertext of the plaintext
 * under the key's material, GCM tag (16). The associated data is the header (format byte and key id) followed by
 * the canonical encryption context, so neither can be changed without Decrypt failing.
 */
function sealUnderKey(key: KmsKey, plaintext: Buffer, context: EncryptionContext): Buffer {
  const header = Buffer.concat([Buffer.from([CIPHERTEXT_FORMAT]), keyIdBytes(key.stored.keyId)]);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key.material, iv);
  cipher.setAAD(Buffer.concat([header, canonicalContext(context)]));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([header, iv, body, cipher.getAuthTag()]);
}

/** The key id a ciphertext names, or InvalidCiphertextException when it is not one of this server's. */
function keyIdOfCiphertext(ciphertext: Buffer): string {
  if (ciphertext.length <= HEADER_BYTES + IV_BYTES + TAG_BYTES || ciphertext[0] !== CIPHERTEXT_FORMAT) {
    throw invalidCiphertext();
  }
  return keyIdFromBytes(ciphertext.subarray(1, HEADER_BYTES));
}

function openUnderKey(key: KmsKey, ciphertext: Buffer, context: EncryptionContext): Buffer {
  const header = ciphertext.subarray(0, HEADER_BYTES);
  const iv = ciphertext.subarray(HEADER_BYTES, HEADER_BYTES + IV_BYTES);
  const body = ciphertext.subarray(HEADER_BYTES + IV_BYTES, ciphertext.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv('aes-256-gcm', key.material, iv);
    decipher.setAAD(Buffer.concat([header, canonicalContext(context)]));
    decipher.setAuthTag(ciphertext.subarray(ciphertext.length - TAG_BYTES));
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch {
    // Tampered, or another encryption context: GCM authentication failed.
    throw invalidCiphertext();
  }
}

function keyMetadata(key: StoredKey, accountId: string): JsonObject {
  return {
    AWSAccountId: accountId,
    KeyId: key.keyId,
    Arn: key.arn,
    CreationDate: key.creationDate / 1000,
    Enabled: true,
    Description: key.description,
    KeyUsage: 'ENCRYPT_DECRYPT',
    KeyState: 'Enabled',
    Origin: 'AWS_KMS',
    KeyManager: 'CUSTOMER',
    CustomerMasterKeySpec: SYMMETRIC_DEFAULT,
    KeySpec: SYMMETRIC_DEFAULT,
    EncryptionAlgorithms: [SYMMETRIC_DEFAULT],
    MultiRegion: false,
  };
}

function requiredKeyId(members: RequestMembers, member = 'KeyId'): string {
  return members.requiredString(member, { max: 2048 });
}

/** Every operation refuses the members it does not implement with UnsupportedOperationException. */
const operation = operationsRefusing('UnsupportedOperationException');

/** The supported operations, by the name that follows `TrentService.` in X-Amz-Target. */
function createOperations({ directory, arnPrefix, accountId, now }: LocalServiceContext) {
  const store = new KmsFileStore(directory, arnPrefix);
  return new Map<string, AwsJsonOperation>([
    [
      'CreateKey',
      operation(['Description', 'KeyUsage', 'KeySpec'], async (members) => {
        const description = members.optionalString('Description', { max: 8192 }) ?? '';
        const keyUsage = members.optionalString('KeyUsage', { max: 64 }) ?? 'ENCRYPT_DECRYPT';
        const keySpec = members.optionalString('KeySpec', { max: 64 }) ?? SYMMETRIC_DEFAULT;
        if (keyUsage !== 'ENCRYPT_DECRYPT' || keySpec !== SYMMETRIC_DEFAULT) {
          throw unsupported(`A key of KeyUsage ${keyUsage} and KeySpec ${keySpec}`);
        }
        const keyId = randomUUID();
        const key: StoredKey = {
          formatVersion: 1,
          keyId,
          arn: store.keyArn(keyId),
          description,
          creationDate: now(),
          keyMaterial: randomBytes(MASTER_KEY_BYTES).toString('base64'),
        };
        await store.writeKey(key);
        return { KeyMetadata: keyMetadata(key, accountId) };
      }),
    ],
    [
      'DescribeKey',
      operation(['KeyId'], async (members) => {
        const key = await store.resolve(requiredKeyId(members));
        return { KeyMetadata: keyMetadata(key.stored, accountId) };
      }),
    ],
    [
      'CreateAlias',
      operation(['AliasName', 'TargetKeyId'], async (members) => {
        const aliasName = members.requiredString('AliasName', { max: 256 });
        if (!ALIAS_NAME_PATTERN.test(aliasName)) {
          throw modelValidationError(
            'AliasName',
            `Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$`,
          );
        }
        if (!aliasName.startsWith('alias/') || aliasName.length === 'alias/'.length) {
          throw kmsError('InvalidAliasNameException', 'Alias must start with the prefix "alias/".');
        }
        if (aliasName.startsWith('alias/aws/')) {
          throw kmsError(
            'InvalidAliasNameException',
            'The alias/aws/ prefix is reserved for AWS managed keys.',
          );
        }
        // An alias points at a key, named by key id or key ARN, never at another alias.
        const target = await store.resolve(requiredKeyId(members, 'TargetKeyId'), false);
        const created = await store.createAlias({
          formatVersion: 1,
          aliasName,
          aliasArn: store.aliasArn(aliasName),
          targetKeyId: target.stored.keyId,
          creationDate: now(),
        });
        if (!created) {
          throw kmsError(
            'AlreadyExistsException',
            `An alias with the name ${store.aliasArn(aliasName)} already exists`,
          );
        }
        return {};
      }),
    ],
    [
      'GenerateDataKey',
      operation(['KeyId', 'KeySpec', 'EncryptionContext'], async (members) => {
        const keyIdentifier = requiredKeyId(members);
        const context = members.stringMap('EncryptionContext');
        const keySpec = members.optionalEnum('KeySpec', Object.keys(DATA_KEY_SPEC_BYTES) as DataKeySpec[]);
        // KMS takes KeySpec or NumberOfBytes; the broker sends KeySpec, and NumberOfBytes is not implemented.
        if (keySpec === undefined) throw modelValidationError('KeySpec', 'Member must not be null', true);
        const key = await store.resolve(keyIdentifier);
        const dataKey = randomBytes(DATA_KEY_SPEC_BYTES[keySpec]);
        return {
          CiphertextBlob: sealUnderKey(key, dataKey, context).toString('base64'),
          Plaintext: dataKey.toString('base64'),
          KeyId: key.stored.arn,
        };
      }),
    ],
    [
      'Decrypt',
      operation(['CiphertextBlob', 'EncryptionContext', 'KeyId'], async (members) => {
        const ciphertext = members.requiredBlob('CiphertextBlob', { min: 1, max: MAX_CIPHERTEXT_BYTES });
        const context = members.stringMap('EncryptionContext');
        const keyIdentifier = members.optionalString('KeyId', { min: 1, max: 2048 });
        // The ciphertext names its key; a KeyId in the request only asserts which key that must be.
        const key = await store.keyById(keyIdOfCiphertext(ciphertext));
        if (keyIdentifier !== undefined) {
          const expected = await store.resolve(keyIdentifier);
          if (expected.stored.keyId !== key.stored.keyId) {
            throw kmsError(
              'IncorrectKeyException',
              'The key ID in the request does not identify a CMK that can perform this operation.',
            );
          }
        }
        return {
          KeyId: key.stored.arn,
          Plaintext: openUnderKey(key, ciphertext, context).toString('base64'),
          EncryptionAlgorithm: SYMMETRIC_DEFAULT,
        };
      }),
    ],
  ]);
}

/**
 * Starts a local KMS over the files in `options.dataDir`. Servers started over the same dataDir (in this process
 * or others) share every key and alias, so one decrypts what another encrypted.
 */
export async function startKmsServer(options: KmsServerOptions): Promise<RunningKmsServer> {
  return startLocalAwsServer(options, {
    arnService: 'kms',
    directoryName: 'kms',
    targetPrefix: 'TrentService',
    // Asymmetric signing keys are answered by local/kms-asymmetric.ts; everything else by this file.
    operations: (context) => withAsymmetricKeys(createOperations(context), context),
    logName: 'kms-server',
    // Every KMS error shape, modeled or not, carries its text in `message`, so no error type is capitalized.
    internalError: { errorType: 'KMSInternalException', message: 'An internal error occurred.' },
  });
}

async function describeKeyArn(client: KMSClient, keyId: string): Promise<string | undefined> {
  try {
    const { KeyMetadata } = await client.send(new DescribeKeyCommand({ KeyId: keyId }));
    if (!KeyMetadata?.Arn) throw new Error(`DescribeKey of ${keyId} returned no key ARN`);
    return KeyMetadata.Arn;
  } catch (error) {
    if (error instanceof NotFoundException) return undefined;
    throw error;
  }
}

/**
 * Returns the ARN of the key `alias` (e.g. `alias/token-broker-local`) names, first creating a key and the alias
 * when the alias does not exist yet. Safe to call from several processes at once: they all end up with the key of
 * whichever CreateAlias won; a loser's own key is left unused, as it would be on AWS.
 */
export async function ensureLocalKey(client: KMSClient, alias: string): Promise<string> {
  if (!alias.startsWith('alias/')) throw new Error(`not an alias name: ${alias}`);
  const existing = await describeKeyArn(client, alias);
  if (existing) return existing;

  const { KeyMetadata } = await client.send(
    new CreateKeyCommand({ Description: `Local key for ${alias}, created by ensureLocalKey` }),
  );
  if (!KeyMetadata?.KeyId || !KeyMetadata.Arn) throw new Error('CreateKey returned no key id or ARN');
  try {
    await client.send(new CreateAliasCommand({ AliasName: alias, TargetKeyId: KeyMetadata.KeyId }));
    return KeyMetadata.Arn;
  } catch (error) {
    if (!(error instanceof AlreadyExistsException)) throw error;
  }
  // Created by another caller between our DescribeKey and CreateAlias: use its key.
  const winner = await describeKeyArn(client, alias);
  if (!winner) throw new Error(`${alias} exists but names no key`);
  return winner;
}

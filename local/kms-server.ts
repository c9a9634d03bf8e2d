/**
 * A local AWS KMS that speaks the service's real wire protocol (AWS JSON 1.1, `X-Amz-Target: TrentService.*`), so
 * local mode and the integration tests run the broker's envelope encryption through the real @aws-sdk/client-kms
 * client unchanged. It covers the operations the broker (and its local setup) uses, with KMS's error types:
 * CreateKey, DescribeKey, CreateAlias, GenerateDataKey, Encrypt, Decrypt.
 *
 * Keys are symmetric (SYMMETRIC_DEFAULT) only. Each has 32 random bytes of key material, and a ciphertext is this
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
 * authenticated. SigV4 signatures are deliberately not verified, so any credentials work; key policies and grants
 * are accepted and ignored. Key material, plaintexts and data keys never appear in logs or error messages.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, randomUUID } from 'node:crypto';
import { chmod, link, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  AlreadyExistsException,
  CreateAliasCommand,
  CreateKeyCommand,
  DescribeKeyCommand,
  type KMSClient,
  NotFoundException,
} from '@aws-sdk/client-kms';
import {
  AwsJsonError,
  errnoCode,
  type JsonObject,
  LocalStoreError,
  startAwsJsonServer,
} from './aws-json-server';

export interface KmsServerOptions {
  /** Directory holding the store (`kms/` is created inside it); share it to share the keys. */
  dataDir: string;
  /** Interface to listen on; 127.0.0.1 by default. */
  host?: string;
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** Region written into ARNs; us-east-1 by default. */
  region?: string;
  /** Account id written into ARNs; 000000000000 by default. */
  accountId?: string;
  /** Clock in epoch milliseconds, for creation dates; Date.now by default. */
  now?: () => number;
}

export interface RunningKmsServer {
  /** Base URL to give the SDK as `endpoint` (or AWS_ENDPOINT_URL_KMS), e.g. http://127.0.0.1:4566. */
  url: string;
  /** Stops listening and closes open connections; the files stay. */
  close(): Promise<void>;
}

/** The alias local mode gives the key that envelope-encrypts cached tokens. */
export const LOCAL_KMS_KEY_ALIAS = 'alias/token-broker-local';

const MASTER_KEY_BYTES = 32;
const KEY_ID_BYTES = 16;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** First byte of every ciphertext, so that a later format can be told apart. */
const CIPHERTEXT_FORMAT = 1;
const HEADER_BYTES = 1 + KEY_ID_BYTES;
/** KMS's quotas: Encrypt takes up to 4096 bytes, Decrypt up to 6144, a data key is 1 to 1024 bytes. */
const MAX_PLAINTEXT_BYTES = 4096;
const MAX_CIPHERTEXT_BYTES = 6144;
const MAX_DATA_KEY_BYTES = 1024;
const DATA_KEY_SPEC_BYTES: Record<string, number> = { AES_256: 32, AES_128: 16 };

const SYMMETRIC_DEFAULT = 'SYMMETRIC_DEFAULT';
const ENCRYPTION_ALGORITHMS = ['SYMMETRIC_DEFAULT', 'RSAES_OAEP_SHA_1', 'RSAES_OAEP_SHA_256', 'SM2PKE'];
const KEY_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** The AliasName pattern of the KMS model; the `alias/` prefix is checked separately, as KMS does. */
const ALIAS_NAME_PATTERN = /^[a-zA-Z0-9:/_-]+$/;
const BASE64_PATTERN = /^[A-Za-z0-9+/]*={0,2}$/;

/** An error reported to the caller in the AWS JSON error shape. Messages never contain key material. */
class KmsError extends AwsJsonError {}

/** KMS says nothing about why a ciphertext was refused: wrong context, tampering and garbage look alike. */
const invalidCiphertext = () => new KmsError('InvalidCiphertextException', 'The ciphertext is invalid.');
const invalidKeyId = (keyId: string) => new KmsError('NotFoundException', `Invalid keyId ${keyId}`);
const unsupported = (what: string) =>
  new KmsError('UnsupportedOperationException', `${what} is not supported by this local KMS server.`);

/** Coral's wording for a request that breaks a constraint of the service model (member names in camelCase). */
function modelValidationError(member: string, constraint: string, valueIsNull = false): KmsError {
  const memberPath = member.charAt(0).toLowerCase() + member.slice(1);
  const value = valueIsNull ? 'Value null' : 'Value';
  return new KmsError(
    'ValidationException',
    `1 validation error detected: ${value} at '${memberPath}' failed to satisfy constraint: ${constraint}`,
  );
}

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

function ignoreMissingFile(error: unknown): void {
  if (errnoCode(error) !== 'ENOENT') throw error;
}

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

  private async readJson(filePath: string): Promise<JsonObject | undefined> {
    let contents: string;
    try {
      contents = await readFile(filePath, 'utf8');
    } catch (error) {
      ignoreMissingFile(error);
      return undefined;
    }
    try {
      return JSON.parse(contents) as JsonObject;
    } catch {
      // JSON.parse messages quote the input, which holds key material; report only the file.
      throw new LocalStoreError(`${path.basename(filePath)} is not valid JSON`);
    }
  }

  async readKey(keyId: string): Promise<KmsKey | undefined> {
    const stored = (await this.readJson(this.keyFile(keyId))) as StoredKey | undefined;
    if (!stored) return undefined;
    const material =
      typeof stored.keyMaterial === 'string' ? Buffer.from(stored.keyMaterial, 'base64') : Buffer.alloc(0);
    if (stored.formatVersion !== 1 || stored.keyId !== keyId || material.length !== MASTER_KEY_BYTES) {
      throw new LocalStoreError(`key file of ${keyId} is not a key of this server's format`);
    }
    return { stored, material };
  }

  async readAlias(aliasName: string): Promise<StoredAlias | undefined> {
    const stored = (await this.readJson(this.aliasFile(aliasName))) as StoredAlias | undefined;
    if (stored && (stored.formatVersion !== 1 || stored.aliasName !== aliasName)) {
      throw new LocalStoreError(`alias file of ${aliasName} is not an alias of this server's format`);
    }
    return stored;
  }

  /** Key ids are fresh UUIDs, so a key file never replaces another; the rename only makes it appear whole. */
  async writeKey(key: StoredKey): Promise<void> {
    const filePath = this.keyFile(key.keyId);
    const tempPath = this.tempPathFor(filePath);
    try {
      await writeFile(tempPath, `${JSON.stringify(key)}\n`, { mode: 0o600, flag: 'wx' });
      await rename(tempPath, filePath);
    } catch (error) {
      await unlink(tempPath).catch(ignoreMissingFile);
      throw error;
    }
  }

  /**
   * Creates the alias unless one of that name exists, and says whether it did. link() fails with EEXIST when the
   * target exists and is atomic, also across processes; unlike an O_EXCL create it never exposes an empty file.
   */
  async createAlias(alias: StoredAlias): Promise<boolean> {
    const filePath = this.aliasFile(alias.aliasName);
    const tempPath = this.tempPathFor(filePath);
    try {
      await writeFile(tempPath, `${JSON.stringify(alias)}\n`, { mode: 0o600, flag: 'wx' });
      await link(tempPath, filePath);
      return true;
    } catch (error) {
      if (errnoCode(error) === 'EEXIST') return false;
      throw error;
    } finally {
      await unlink(tempPath).catch(ignoreMissingFile);
    }
  }

  private tempPathFor(filePath: string): string {
    return path.join(path.dirname(filePath), `.${path.basename(filePath)}.${randomUUID()}.tmp`);
  }

  async keyById(keyId: string): Promise<KmsKey> {
    const key = await this.readKey(keyId);
    if (!key) throw new KmsError('NotFoundException', `Key '${this.keyArn(keyId)}' does not exist`);
    return key;
  }

  private async keyByAlias(aliasName: string): Promise<KmsKey> {
    const alias = await this.readAlias(aliasName);
    if (!alias) throw new KmsError('NotFoundException', `Alias ${this.aliasArn(aliasName)} is not found.`);
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

/** Reads the members of one request body, enforcing the types and constraints of the service model. */
class RequestMembers {
  constructor(private readonly body: JsonObject) {}

  /** A JSON null counts as absent, as on AWS. */
  private raw(member: string): unknown {
    const value = this.body[member];
    return value === null ? undefined : value;
  }

  private typeError(member: string, expected: string): KmsError {
    return new KmsError('SerializationException', `Expected ${member} to be ${expected}`);
  }

  has(member: string): boolean {
    return this.raw(member) !== undefined;
  }

  optionalString(member: string, limits: { min?: number; max: number }): string | undefined {
    const value = this.raw(member);
    if (value === undefined) return undefined;
    if (typeof value !== 'string') throw this.typeError(member, 'a string');
    const min = limits.min ?? 0;
    if (value.length < min) {
      throw modelValidationError(member, `Member must have length greater than or equal to ${min}`);
    }
    if (value.length > limits.max) {
      throw modelValidationError(member, `Member must have length less than or equal to ${limits.max}`);
    }
    return value;
  }

  requiredString(member: string, limits: { min?: number; max: number }): string {
    const value = this.optionalString(member, { min: 1, ...limits });
    if (value === undefined) throw modelValidationError(member, 'Member must not be null', true);
    return value;
  }

  optionalEnum(member: string, allowed: string[]): string | undefined {
    const value = this.optionalString(member, { max: 256 });
    if (value !== undefined && !allowed.includes(value)) {
      throw modelValidationError(member, `Member must satisfy enum value set: [${allowed.join(', ')}]`);
    }
    return value;
  }

  optionalInteger(member: string): number | undefined {
    const value = this.raw(member);
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value)) throw this.typeError(member, 'an integer');
    return value;
  }

  optionalBoolean(member: string): boolean | undefined {
    const value = this.raw(member);
    if (value === undefined) return undefined;
    if (typeof value !== 'boolean') throw this.typeError(member, 'a boolean');
    return value;
  }

  /** A blob arrives as a base64 string; the error never quotes it (it may be a plaintext). */
  optionalBlob(member: string, limits: { min: number; max: number }): Buffer | undefined {
    const value = this.raw(member);
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || !BASE64_PATTERN.test(value) || value.length % 4 !== 0) {
      throw this.typeError(member, 'a base64-encoded blob');
    }
    const bytes = Buffer.from(value, 'base64');
    if (bytes.length < limits.min) {
      throw modelValidationError(member, `Member must have length greater than or equal to ${limits.min}`);
    }
    if (bytes.length > limits.max) {
      throw modelValidationError(member, `Member must have length less than or equal to ${limits.max}`);
    }
    return bytes;
  }

  requiredBlob(member: string, limits: { min: number; max: number }): Buffer {
    const value = this.optionalBlob(member, limits);
    if (value === undefined) throw modelValidationError(member, 'Member must not be null', true);
    return value;
  }

  /** An absent and an empty encryption context are the same thing in KMS. */
  encryptionContext(): EncryptionContext {
    const value = this.raw('EncryptionContext');
    if (value === undefined) return {};
    if (
      typeof value !== 'object' ||
      Array.isArray(value) ||
      Object.values(value as object).some((entry) => typeof entry !== 'string')
    ) {
      throw this.typeError('EncryptionContext', 'a map of strings');
    }
    return value as EncryptionContext;
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

/** Only SYMMETRIC_DEFAULT keys exist here; KMS refuses an algorithm its key does not support this way. */
function checkEncryptionAlgorithm(members: RequestMembers): void {
  const algorithm = members.optionalEnum('EncryptionAlgorithm', ENCRYPTION_ALGORITHMS);
  if (algorithm !== undefined && algorithm !== SYMMETRIC_DEFAULT) {
    throw new KmsError(
      'InvalidKeyUsageException',
      `The encryption algorithm ${algorithm} is not supported by a SYMMETRIC_DEFAULT key.`,
    );
  }
}

/** Recipient (Nitro Enclaves attestation) changes what KMS returns; quietly ignoring it would mislead. */
function refuseRecipient(members: RequestMembers): void {
  if (members.has('Recipient')) throw unsupported('Recipient');
}

/** Called once a request has been validated and its key found: a dry run stops there, as on KMS. */
function stopOnDryRun(members: RequestMembers): void {
  if (members.optionalBoolean('DryRun') === true) {
    throw new KmsError(
      'DryRunOperationException',
      'The request would have succeeded, but the DryRun option is set.',
    );
  }
}

type OperationHandler = (members: RequestMembers) => Promise<JsonObject>;

/** The supported operations, by the name that follows `TrentService.` in X-Amz-Target. */
function createOperations(
  store: KmsFileStore,
  now: () => number,
  accountId: string,
): Map<string, OperationHandler> {
  const operations = new Map<string, OperationHandler>();

  operations.set('CreateKey', async (members) => {
    const description = members.optionalString('Description', { max: 8192 }) ?? '';
    const keyUsage = members.optionalString('KeyUsage', { max: 64 }) ?? 'ENCRYPT_DECRYPT';
    const keySpec =
      members.optionalString('KeySpec', { max: 64 }) ??
      members.optionalString('CustomerMasterKeySpec', { max: 64 }) ??
      SYMMETRIC_DEFAULT;
    const origin = members.optionalString('Origin', { max: 64 }) ?? 'AWS_KMS';
    if (keyUsage !== 'ENCRYPT_DECRYPT' || keySpec !== SYMMETRIC_DEFAULT) {
      throw unsupported(`A key of KeyUsage ${keyUsage} and KeySpec ${keySpec}`);
    }
    if (origin !== 'AWS_KMS') throw unsupported(`Origin ${origin}`);
    if (members.optionalBoolean('MultiRegion') === true) throw unsupported('A multi-Region key');
    if (members.has('CustomKeyStoreId') || members.has('XksKeyId')) throw unsupported('A custom key store');
    // Policy, BypassPolicyLockoutSafetyCheck and Tags are accepted and ignored: nothing is authorized here and
    // no supported operation reads tags back.

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
  });

  operations.set('DescribeKey', async (members) => {
    const key = await store.resolve(requiredKeyId(members));
    return { KeyMetadata: keyMetadata(key.stored, accountId) };
  });

  operations.set('CreateAlias', async (members) => {
    const aliasName = members.requiredString('AliasName', { max: 256 });
    if (!ALIAS_NAME_PATTERN.test(aliasName)) {
      throw modelValidationError(
        'AliasName',
        `Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$`,
      );
    }
    if (!aliasName.startsWith('alias/') || aliasName.length === 'alias/'.length) {
      throw new KmsError('InvalidAliasNameException', 'Alias must start with the prefix "alias/".');
    }
    if (aliasName.startsWith('alias/aws/')) {
      throw new KmsError(
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
      throw new KmsError(
        'AlreadyExistsException',
        `An alias with the name ${store.aliasArn(aliasName)} already exists`,
      );
    }
    return {};
  });

  operations.set('GenerateDataKey', async (members) => {
    const keyIdentifier = requiredKeyId(members);
    const context = members.encryptionContext();
    const keySpec = members.optionalEnum('KeySpec', Object.keys(DATA_KEY_SPEC_BYTES));
    const numberOfBytes = members.optionalInteger('NumberOfBytes');
    if ((keySpec === undefined) === (numberOfBytes === undefined)) {
      throw new KmsError('ValidationException', 'Please specify either number of bytes or key spec.');
    }
    if (numberOfBytes !== undefined && (numberOfBytes < 1 || numberOfBytes > MAX_DATA_KEY_BYTES)) {
      throw modelValidationError(
        'NumberOfBytes',
        `Member must have value between 1 and ${MAX_DATA_KEY_BYTES}`,
      );
    }
    refuseRecipient(members);
    const key = await store.resolve(keyIdentifier);
    stopOnDryRun(members);
    const dataKey = randomBytes(numberOfBytes ?? (DATA_KEY_SPEC_BYTES[keySpec as string] as number));
    return {
      CiphertextBlob: sealUnderKey(key, dataKey, context).toString('base64'),
      Plaintext: dataKey.toString('base64'),
      KeyId: key.stored.arn,
    };
  });

  operations.set('Encrypt', async (members) => {
    const keyIdentifier = requiredKeyId(members);
    const plaintext = members.requiredBlob('Plaintext', { min: 1, max: MAX_PLAINTEXT_BYTES });
    const context = members.encryptionContext();
    checkEncryptionAlgorithm(members);
    const key = await store.resolve(keyIdentifier);
    stopOnDryRun(members);
    return {
      CiphertextBlob: sealUnderKey(key, plaintext, context).toString('base64'),
      KeyId: key.stored.arn,
      EncryptionAlgorithm: SYMMETRIC_DEFAULT,
    };
  });

  operations.set('Decrypt', async (members) => {
    const ciphertext = members.requiredBlob('CiphertextBlob', { min: 1, max: MAX_CIPHERTEXT_BYTES });
    const context = members.encryptionContext();
    const keyIdentifier = members.optionalString('KeyId', { min: 1, max: 2048 });
    checkEncryptionAlgorithm(members);
    refuseRecipient(members);
    // The ciphertext names its key; a KeyId in the request only asserts which key that must be.
    const key = await store.keyById(keyIdOfCiphertext(ciphertext));
    if (keyIdentifier !== undefined) {
      const expected = await store.resolve(keyIdentifier);
      if (expected.stored.keyId !== key.stored.keyId) {
        throw new KmsError(
          'IncorrectKeyException',
          'The key ID in the request does not identify a CMK that can perform this operation.',
        );
      }
    }
    stopOnDryRun(members);
    return {
      KeyId: key.stored.arn,
      Plaintext: openUnderKey(key, ciphertext, context).toString('base64'),
      EncryptionAlgorithm: SYMMETRIC_DEFAULT,
    };
  });

  return operations;
}

/**
 * Starts a local KMS over the files in `options.dataDir`. Servers started over the same dataDir (in this process
 * or others) share every key and alias, so one decrypts what another encrypted.
 */
export async function startKmsServer(options: KmsServerOptions): Promise<RunningKmsServer> {
  const region = options.region ?? 'us-east-1';
  const accountId = options.accountId ?? '000000000000';
  const now = options.now ?? Date.now;
  const kmsDirectory = path.join(options.dataDir, 'kms');
  await mkdir(kmsDirectory, { recursive: true, mode: 0o700 });
  // mkdir's mode applies only when it creates the directory; the key material inside must stay private either way.
  await chmod(kmsDirectory, 0o700);

  const store = new KmsFileStore(kmsDirectory, `arn:aws:kms:${region}:${accountId}:`);
  const operations = createOperations(store, now, accountId);

  return startAwsJsonServer({
    targetPrefix: 'TrentService',
    // The parsing of members stays per service: their types and constraints are the service model's.
    operations: new Map(
      [...operations].map(([name, operation]) => [name, (body) => operation(new RequestMembers(body))]),
    ),
    logName: 'kms-server',
    // Every KMS error shape, modeled or not, carries its text in `message`, so no error type is capitalized.
    internalError: { errorType: 'KMSInternalException', message: 'An internal error occurred.' },
    host: options.host,
    port: options.port,
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

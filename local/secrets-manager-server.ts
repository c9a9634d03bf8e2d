/**
 * A local AWS Secrets Manager that speaks the service's real wire protocol (AWS JSON 1.1), so local mode and the
 * integration tests run the broker's production adapter (the real @aws-sdk/client-secrets-manager client) against
 * it unchanged. No emulator for this service exists on npm; this one covers the operations the broker uses, with
 * AWS's validation rules, error types and messages:
 * CreateSecret, GetSecretValue, PutSecretValue, DescribeSecret, DeleteSecret, RestoreSecret, ListSecrets,
 * TagResource.
 *
 * Storage: one JSON file per secret under `${dataDir}/secrets/`, named by a hash of the secret name, read on every
 * request and replaced atomically (temp file + rename) while holding a per-secret lock file. Several processes,
 * each embedding its own server over the same dataDir, therefore share one store, the way a fleet of Lambda
 * instances shares one AWS account.
 *
 * Local use only: values are stored unencrypted (files 0600 in a 0700 directory) and requests are not
 * authenticated. SigV4 signatures are deliberately not verified, so any credentials work.
 */
import { createHash, randomInt, randomUUID } from 'node:crypto';
import {
  chmod,
  type FileHandle,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import {
  AwsJsonError,
  errnoCode,
  type JsonObject,
  LocalStoreError,
  startAwsJsonServer,
} from './aws-json-server';

export interface SecretsManagerServerOptions {
  /** Directory holding the store (`secrets/` is created inside it); share it to share the store. */
  dataDir: string;
  /** Interface to listen on; 127.0.0.1 by default. */
  host?: string;
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** Region written into ARNs; us-east-1 by default. */
  region?: string;
  /** Account id written into ARNs; 000000000000 by default. */
  accountId?: string;
  /** Clock in epoch milliseconds, for creation dates and recovery windows; Date.now by default. */
  now?: () => number;
}

export interface RunningSecretsManagerServer {
  /** Base URL to give the SDK as `endpoint` (or AWS_ENDPOINT_URL_SECRETS_MANAGER), e.g. http://127.0.0.1:4566. */
  url: string;
  /** Stops listening and closes open connections; the files stay. */
  close(): Promise<void>;
}

/**
 * AWS's quota for one secret value, counted in UTF-8 bytes: the stricter reading, so that nothing accepted here
 * is refused by AWS.
 */
const MAX_SECRET_VALUE_BYTES = 65_536;
/** AWS keeps about 100 versions without staging labels before removing the oldest. */
const MAX_UNLABELED_VERSIONS = 100;
const DAY_MS = 86_400_000;
/** How long a mutation waits for another request (in any process) that holds the same secret's lock. */
const LOCK_WAIT_MS = 10_000;
/** Critical sections take milliseconds; a lock this old was left behind by a crashed process. */
const STALE_LOCK_MS = 30_000;

const SECRET_NAME_PATTERN = /^[A-Za-z0-9/_+=.@-]+$/;
const INVALID_NAME_MESSAGE =
  'Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!';
/** Stored secret files; temp files and lock files never match. */
const SECRET_FILE_PATTERN = /^[0-9a-f]{64}\.json$/;
const ARN_SUFFIX_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const STAGE_CURRENT = 'AWSCURRENT';
const STAGE_PREVIOUS = 'AWSPREVIOUS';

/** Error types declared in the Secrets Manager model carry `Message`; framework errors carry `message`, as on AWS. */
const MODELED_ERROR_TYPES = new Set([
  'InvalidNextTokenException',
  'InvalidParameterException',
  'InvalidRequestException',
  'LimitExceededException',
  'ResourceExistsException',
  'ResourceNotFoundException',
  'InternalServiceError',
]);

/** An error reported to the caller in the AWS JSON error shape. Messages never contain secret values. */
class SecretsManagerError extends AwsJsonError {}

const secretNotFound = () =>
  new SecretsManagerError('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
const markedForDeletion = () =>
  new SecretsManagerError(
    'InvalidRequestException',
    "You can't perform this operation on the secret because it was marked for deletion.",
  );

/** Coral's wording for a request that breaks a constraint of the service model (member names in camelCase). */
function modelValidationError(member: string, constraint: string, valueIsNull = false): SecretsManagerError {
  const memberPath = member.charAt(0).toLowerCase() + member.slice(1);
  const value = valueIsNull ? 'Value null' : 'Value';
  return new SecretsManagerError(
    'ValidationException',
    `1 validation error detected: ${value} at '${memberPath}' failed to satisfy constraint: ${constraint}`,
  );
}

interface StoredTag {
  key: string;
  value: string;
}

interface StoredVersion {
  versionId: string;
  secretString?: string;
  /** Base64, as on the wire. */
  secretBinary?: string;
  stages: string[];
  createdDate: number;
}

/** One secret file. Dates are epoch milliseconds. */
interface StoredSecret {
  formatVersion: 1;
  arn: string;
  name: string;
  description?: string;
  kmsKeyId?: string;
  tags: StoredTag[];
  createdDate: number;
  lastChangedDate: number;
  /** When DeleteSecret scheduled the deletion (DescribeSecret's DeletedDate). */
  deletedDate?: number;
  /** End of the recovery window (DeleteSecret's DeletionDate); from then on the secret counts as purged. */
  deletionDate?: number;
  versions: StoredVersion[];
}

interface SecretValue {
  secretString?: string;
  secretBinary?: string;
}

function isErrnoError(error: unknown, code: string): boolean {
  return errnoCode(error) === code;
}

function ignoreMissingFile(error: unknown): void {
  if (!isErrnoError(error, 'ENOENT')) throw error;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return isErrnoError(error, 'EPERM');
  }
}

/** Replaces `filePath` in one step, so a reader in any process sees the old or the new file, never half of one. */
async function writeFileAtomically(filePath: string, contents: string): Promise<void> {
  const tempPath = path.join(path.dirname(filePath), `.${path.basename(filePath)}.${randomUUID()}.tmp`);
  try {
    await writeFile(tempPath, contents, { mode: 0o600, flag: 'wx' });
    await rename(tempPath, filePath);
  } catch (error) {
    await unlink(tempPath).catch(ignoreMissingFile);
    throw error;
  }
}

/**
 * The secret files of one dataDir. Nothing is cached: every call reads the disk, so writes by other processes
 * are seen at once. Mutations of one secret are serialized across processes by an exclusive lock file.
 */
class SecretFileStore {
  constructor(
    private readonly directory: string,
    private readonly now: () => number,
    private readonly arnPrefix: string,
  ) {}

  isScheduledForDeletion(secret: StoredSecret): boolean {
    return secret.deletionDate !== undefined;
  }

  private fileFor(name: string): string {
    return path.join(this.directory, `${createHash('sha256').update(name).digest('hex')}.json`);
  }

  private async readSecretFile(filePath: string): Promise<StoredSecret | undefined> {
    let contents: string;
    try {
      contents = await readFile(filePath, 'utf8');
    } catch (error) {
      ignoreMissingFile(error);
      return undefined;
    }
    let secret: StoredSecret;
    try {
      secret = JSON.parse(contents) as StoredSecret;
    } catch {
      // JSON.parse messages quote the input, which holds secret values; report only the file.
      throw new LocalStoreError(`secret file ${path.basename(filePath)} is not valid JSON`);
    }
    // Past its recovery window the secret is gone, as AWS purges it; its file is replaced on the next create.
    if (secret.deletionDate !== undefined && secret.deletionDate <= this.now()) return undefined;
    return secret;
  }

  /** The live or scheduled-for-deletion secret with this exact name. */
  async readByName(name: string): Promise<StoredSecret | undefined> {
    return this.readSecretFile(this.fileFor(name));
  }

  /**
   * Finds a secret by SecretId: its name, its full ARN, or its partial ARN (the full ARN without the
   * `-XXXXXX` suffix). As on AWS, an ARN ending in a hyphen and six characters is first read as a full ARN.
   */
  async resolve(secretId: string): Promise<StoredSecret> {
    if (!secretId.startsWith('arn:')) {
      const secret = await this.readByName(secretId);
      if (!secret) throw secretNotFound();
      return secret;
    }
    if (!secretId.startsWith(this.arnPrefix)) throw secretNotFound();
    const resource = secretId.slice(this.arnPrefix.length);
    if (/-[A-Za-z0-9]{6}$/.test(resource)) {
      const secret = await this.readByName(resource.slice(0, -7));
      if (secret?.arn === secretId) return secret;
    }
    const secret = await this.readByName(resource);
    if (secret && secret.arn.length === secretId.length + 7 && secret.arn.startsWith(`${secretId}-`)) {
      return secret;
    }
    throw secretNotFound();
  }

  /** Every secret not yet purged, including those scheduled for deletion. */
  async list(): Promise<StoredSecret[]> {
    const fileNames = (await readdir(this.directory)).filter((fileName) =>
      SECRET_FILE_PATTERN.test(fileName),
    );
    const secrets = await Promise.all(
      fileNames.map((fileName) => this.readSecretFile(path.join(this.directory, fileName))),
    );
    return secrets.filter((secret): secret is StoredSecret => secret !== undefined);
  }

  async write(secret: StoredSecret): Promise<void> {
    await writeFileAtomically(this.fileFor(secret.name), `${JSON.stringify(secret)}\n`);
  }

  async remove(name: string): Promise<void> {
    await unlink(this.fileFor(name)).catch(ignoreMissingFile);
  }

  /**
   * Runs `action` holding the lock of the secret called `name`, in whatever process. The lock is a file created
   * with O_EXCL ('wx'), so exactly one creator wins, also across processes; that is what makes CreateSecret of
   * one name race-safe and keeps concurrent PutSecretValue calls from losing a version.
   */
  async withLock<T>(name: string, action: () => Promise<T>): Promise<T> {
    const lockPath = `${this.fileFor(name)}.lock`;
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      let lockFile: FileHandle;
      try {
        lockFile = await open(lockPath, 'wx', 0o600);
      } catch (error) {
        if (!isErrnoError(error, 'EEXIST')) throw error;
        if (await this.isStaleLock(lockPath)) {
          // Two waiters may both judge the same lock stale; locks only go stale when a process dies inside a
          // millisecond-long critical section, so that rarer race is accepted here.
          await unlink(lockPath).catch(ignoreMissingFile);
          continue;
        }
        if (Date.now() > deadline) throw new LocalStoreError(`timed out waiting for the lock ${lockPath}`);
        await sleep(2 + Math.random() * 10);
        continue;
      }
      try {
        try {
          // The owner's pid lets a waiter recognise a lock left behind by a process that died.
          await lockFile.writeFile(`${process.pid}\n`);
        } finally {
          await lockFile.close();
        }
        return await action();
      } finally {
        await unlink(lockPath).catch(ignoreMissingFile);
      }
    }
  }

  private async isStaleLock(lockPath: string): Promise<boolean> {
    try {
      const { mtimeMs } = await stat(lockPath);
      if (Date.now() - mtimeMs > STALE_LOCK_MS) return true;
      const pid = Number.parseInt(await readFile(lockPath, 'utf8'), 10);
      // An empty file is a lock whose owner has not written its pid yet: live.
      return Number.isInteger(pid) && pid !== process.pid && !isProcessAlive(pid);
    } catch (error) {
      ignoreMissingFile(error);
      return false; // Released meanwhile; the next attempt will tell.
    }
  }

  /**
   * Resolves `secretId`, then runs `change` on a fresh read of that secret under its lock. `change` writes the
   * secret (or removes it) itself, since some outcomes (an idempotent retry) write nothing.
   */
  async mutate<T>(secretId: string, change: (secret: StoredSecret) => Promise<T>): Promise<T> {
    const { name } = await this.resolve(secretId);
    return this.withLock(name, async () => {
      // Re-resolve: between the first read and the lock the secret may have been deleted or re-created.
      const fresh = await this.resolve(secretId);
      if (fresh.name !== name) throw secretNotFound();
      return change(fresh);
    });
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

  private typeError(member: string, expected: string): SecretsManagerError {
    return new SecretsManagerError('SerializationException', `Expected ${member} to be ${expected}`);
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

  optionalList(member: string, maxItems: number): unknown[] | undefined {
    const value = this.raw(member);
    if (value === undefined) return undefined;
    if (!Array.isArray(value)) throw this.typeError(member, 'a list');
    if (value.length > maxItems) {
      throw modelValidationError(member, `Member must have length less than or equal to ${maxItems}`);
    }
    return value;
  }

  optionalStringList(
    member: string,
    maxItems: number,
    itemLimits: { min: number; max: number },
  ): string[] | undefined {
    return this.optionalList(member, maxItems)?.map((item) => {
      if (typeof item !== 'string') throw this.typeError(`${member} entries`, 'strings');
      if (item.length < itemLimits.min || item.length > itemLimits.max) {
        throw modelValidationError(
          `${member}.member`,
          `Member must have length between ${itemLimits.min} and ${itemLimits.max}`,
        );
      }
      return item;
    });
  }

  optionalObjectList(member: string, maxItems: number): RequestMembers[] | undefined {
    return this.optionalList(member, maxItems)?.map((item) => {
      if (typeof item !== 'object' || item === null || Array.isArray(item)) {
        throw this.typeError(`${member} entries`, 'structures');
      }
      return new RequestMembers(item as JsonObject);
    });
  }

  /** AWS tag rules: up to 50 tags, keys of 1 to 128 characters, values of up to 256. */
  optionalTags(member: string): StoredTag[] | undefined {
    return this.optionalObjectList(member, 50)?.map((tag) => ({
      key: tag.requiredString('Key', { max: 128 }),
      value: tag.optionalString('Value', { max: 256 }) ?? '',
    }));
  }

  /** SecretString or SecretBinary, either of which may be absent; both at once are refused as on AWS. */
  secretValue(): SecretValue {
    const secretString = this.optionalString('SecretString', { max: Number.MAX_SAFE_INTEGER });
    const secretBinary = this.optionalString('SecretBinary', { max: Number.MAX_SAFE_INTEGER });
    if (secretString !== undefined && secretBinary !== undefined) {
      throw new SecretsManagerError(
        'InvalidParameterException',
        "You can't specify both a binary secret value and a string secret value in the same secret.",
      );
    }
    if (secretString !== undefined) {
      if (Buffer.byteLength(secretString, 'utf8') > MAX_SECRET_VALUE_BYTES) {
        throw modelValidationError(
          'SecretString',
          `Member must have length less than or equal to ${MAX_SECRET_VALUE_BYTES}`,
        );
      }
      return { secretString };
    }
    if (secretBinary !== undefined) {
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(secretBinary) || secretBinary.length % 4 !== 0) {
        throw new SecretsManagerError('SerializationException', 'Expected SecretBinary to be base64-encoded');
      }
      const bytes = Buffer.from(secretBinary, 'base64');
      if (bytes.length > MAX_SECRET_VALUE_BYTES) {
        throw modelValidationError(
          'SecretBinary',
          `Member must have length less than or equal to ${MAX_SECRET_VALUE_BYTES}`,
        );
      }
      return { secretBinary: bytes.toString('base64') };
    }
    return {};
  }
}

function requiredSecretId(members: RequestMembers): string {
  const secretId = members.requiredString('SecretId', { max: 2048 });
  // ARNs are resolved (or not found) later; anything else must be a well-formed name.
  if (!secretId.startsWith('arn:') && !SECRET_NAME_PATTERN.test(secretId)) {
    throw new SecretsManagerError('ValidationException', INVALID_NAME_MESSAGE);
  }
  return secretId;
}

/** The SDK always fills ClientRequestToken (an idempotency token); raw callers must send one too. */
function requiredClientRequestToken(members: RequestMembers): string {
  const token = members.optionalString('ClientRequestToken', { min: 32, max: 64 });
  if (token === undefined) {
    throw new SecretsManagerError(
      'InvalidRequestException',
      'You must provide a ClientRequestToken value. We recommend a UUID-type value.',
    );
  }
  return token;
}

function epochSeconds(ms: number | undefined): number | undefined {
  return ms === undefined ? undefined : ms / 1000;
}

function wireTags(secret: StoredSecret): JsonObject[] | undefined {
  return secret.tags.length > 0 ? secret.tags.map((tag) => ({ Key: tag.key, Value: tag.value })) : undefined;
}

/** Versions with staging labels; unlabeled (deprecated) versions are not listed, as on AWS. */
function versionIdsToStages(secret: StoredSecret): Record<string, string[]> | undefined {
  const labeled = secret.versions.filter((version) => version.stages.length > 0);
  if (labeled.length === 0) return undefined;
  return Object.fromEntries(labeled.map((version) => [version.versionId, version.stages]));
}

/**
 * Adds a version carrying `stages`. Each label moves off whichever version had it; when AWSCURRENT moves, the
 * version that had it becomes AWSPREVIOUS. The oldest unlabeled versions are dropped beyond AWS's limit.
 */
function addVersion(secret: StoredSecret, version: StoredVersion): void {
  const previousCurrent = secret.versions.find((existing) => existing.stages.includes(STAGE_CURRENT));
  for (const existing of secret.versions) {
    existing.stages = existing.stages.filter((stage) => !version.stages.includes(stage));
  }
  if (previousCurrent && version.stages.includes(STAGE_CURRENT) && !version.stages.includes(STAGE_PREVIOUS)) {
    for (const existing of secret.versions) {
      existing.stages = existing.stages.filter((stage) => stage !== STAGE_PREVIOUS);
    }
    previousCurrent.stages.push(STAGE_PREVIOUS);
  }
  secret.versions.push(version);
  const unlabeled = secret.versions.filter((existing) => existing.stages.length === 0);
  const excess = new Set(unlabeled.slice(0, Math.max(0, unlabeled.length - MAX_UNLABELED_VERSIONS)));
  secret.versions = secret.versions.filter((existing) => !excess.has(existing));
}

function randomArnSuffix(): string {
  let suffix = '';
  for (let i = 0; i < 6; i++) suffix += ARN_SUFFIX_ALPHABET[randomInt(ARN_SUFFIX_ALPHABET.length)];
  return suffix;
}

const FILTER_KEYS = new Set([
  'description',
  'name',
  'tag-key',
  'tag-value',
  'primary-region',
  'owning-service',
  'all',
]);

interface ListFilter {
  key: string;
  values: string[];
}

function words(text: string): string[] {
  return text
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((word) => word.length > 0);
}

/**
 * One filter value against one secret. `name`, `tag-key` and `tag-value` are case-sensitive prefix matches (as
 * documented); `description` and `all` match words, case-insensitively. Replication and managed secrets do not
 * exist here, so `primary-region` and `owning-service` match nothing.
 */
function matchesFilterValue(secret: StoredSecret, key: string, value: string): boolean {
  switch (key) {
    case 'name':
      return secret.name.startsWith(value);
    case 'tag-key':
      return secret.tags.some((tag) => tag.key.startsWith(value));
    case 'tag-value':
      return secret.tags.some((tag) => tag.value.startsWith(value));
    case 'description':
    case 'all': {
      const searched =
        key === 'description'
          ? [secret.description ?? '']
          : [secret.name, secret.description ?? '', ...secret.tags.flatMap((tag) => [tag.key, tag.value])];
      const attributeWords = searched.flatMap(words);
      const wanted = words(value);
      return (
        wanted.length > 0 && wanted.every((word) => attributeWords.some((have) => have.startsWith(word)))
      );
    }
    default:
      return false;
  }
}

/** Values of one filter are alternatives (a leading `!` negates one); all filters must hold. */
function matchesFilters(secret: StoredSecret, filters: ListFilter[]): boolean {
  return filters.every((filter) =>
    filter.values.some((value) =>
      value.startsWith('!')
        ? !matchesFilterValue(secret, filter.key, value.slice(1))
        : matchesFilterValue(secret, filter.key, value),
    ),
  );
}

type OperationHandler = (members: RequestMembers) => Promise<JsonObject>;

/** The supported operations, by the name that follows `secretsmanager.` in X-Amz-Target. */
function createOperations(
  store: SecretFileStore,
  now: () => number,
  arnPrefix: string,
): Map<string, OperationHandler> {
  const operations = new Map<string, OperationHandler>();

  operations.set('CreateSecret', async (members) => {
    const name = members.requiredString('Name', { max: 512 });
    if (!SECRET_NAME_PATTERN.test(name))
      throw new SecretsManagerError('ValidationException', INVALID_NAME_MESSAGE);
    const versionId = requiredClientRequestToken(members);
    const description = members.optionalString('Description', { max: 2048 });
    const kmsKeyId = members.optionalString('KmsKeyId', { max: 2048 });
    const value = members.secretValue();
    const tags = members.optionalTags('Tags') ?? [];
    if ((members.optionalList('AddReplicaRegions', 50) ?? []).length > 0) {
      throw new SecretsManagerError(
        'InvalidRequestException',
        'Replication is not supported by this local server.',
      );
    }
    const hasValue = value.secretString !== undefined || value.secretBinary !== undefined;

    return store.withLock(name, async () => {
      const existing = await store.readByName(name);
      if (existing && store.isScheduledForDeletion(existing)) {
        throw new SecretsManagerError(
          'InvalidRequestException',
          "You can't create this secret because a secret with this name is already scheduled for deletion.",
        );
      }
      if (existing) {
        throw new SecretsManagerError(
          'ResourceExistsException',
          `The operation failed because the secret ${name} already exists.`,
        );
      }
      const createdDate = now();
      const secret: StoredSecret = {
        formatVersion: 1,
        arn: `${arnPrefix}${name}-${randomArnSuffix()}`,
        name,
        description,
        kmsKeyId,
        tags,
        createdDate,
        lastChangedDate: createdDate,
        versions: hasValue ? [{ versionId, ...value, stages: [STAGE_CURRENT], createdDate }] : [],
      };
      await store.write(secret);
      return { ARN: secret.arn, Name: secret.name, VersionId: hasValue ? versionId : undefined };
    });
  });

  operations.set('GetSecretValue', async (members) => {
    const secretId = requiredSecretId(members);
    const versionId = members.optionalString('VersionId', { min: 32, max: 64 });
    const versionStage = members.optionalString('VersionStage', { min: 1, max: 256 });
    const secret = await store.resolve(secretId);
    if (store.isScheduledForDeletion(secret)) throw markedForDeletion();

    let version: StoredVersion | undefined;
    if (versionId !== undefined) {
      version = secret.versions.find((candidate) => candidate.versionId === versionId);
      if (!version) {
        throw new SecretsManagerError(
          'ResourceNotFoundException',
          `Secrets Manager can't find the specified secret value for VersionId: ${versionId}`,
        );
      }
      if (versionStage !== undefined && !version.stages.includes(versionStage)) {
        throw new SecretsManagerError(
          'InvalidRequestException',
          'You provided a VersionStage that is not associated to the provided VersionId.',
        );
      }
    } else {
      const stage = versionStage ?? STAGE_CURRENT;
      version = secret.versions.find((candidate) => candidate.stages.includes(stage));
      if (!version) {
        throw new SecretsManagerError(
          'ResourceNotFoundException',
          `Secrets Manager can't find the specified secret value for staging label: ${stage}`,
        );
      }
    }
    return {
      ARN: secret.arn,
      Name: secret.name,
      VersionId: version.versionId,
      SecretString: version.secretString,
      SecretBinary: version.secretBinary,
      VersionStages: version.stages,
      CreatedDate: epochSeconds(version.createdDate),
    };
  });

  operations.set('PutSecretValue', async (members) => {
    const secretId = requiredSecretId(members);
    const versionId = requiredClientRequestToken(members);
    const value = members.secretValue();
    if (value.secretString === undefined && value.secretBinary === undefined) {
      throw new SecretsManagerError(
        'InvalidRequestException',
        'You must provide either SecretString or SecretBinary.',
      );
    }
    const stages = [
      ...new Set(members.optionalStringList('VersionStages', 20, { min: 1, max: 256 }) ?? [STAGE_CURRENT]),
    ];

    return store.mutate(secretId, async (secret) => {
      if (store.isScheduledForDeletion(secret)) throw markedForDeletion();
      const existing = secret.versions.find((version) => version.versionId === versionId);
      if (existing) {
        // The ClientRequestToken makes retries idempotent: the same value again is a no-op, another is refused.
        if (existing.secretString !== value.secretString || existing.secretBinary !== value.secretBinary) {
          throw new SecretsManagerError(
            'ResourceExistsException',
            "You can't modify an existing version, you can only create new versions.",
          );
        }
        return { ARN: secret.arn, Name: secret.name, VersionId: versionId, VersionStages: existing.stages };
      }
      const createdDate = now();
      addVersion(secret, { versionId, ...value, stages, createdDate });
      secret.lastChangedDate = createdDate;
      await store.write(secret);
      return { ARN: secret.arn, Name: secret.name, VersionId: versionId, VersionStages: stages };
    });
  });

  operations.set('DescribeSecret', async (members) => {
    // Works on secrets scheduled for deletion: it is how a caller sees DeletedDate.
    const secret = await store.resolve(requiredSecretId(members));
    return {
      ARN: secret.arn,
      Name: secret.name,
      Description: secret.description,
      KmsKeyId: secret.kmsKeyId,
      LastChangedDate: epochSeconds(secret.lastChangedDate),
      DeletedDate: epochSeconds(secret.deletedDate),
      Tags: wireTags(secret),
      VersionIdsToStages: versionIdsToStages(secret),
      CreatedDate: epochSeconds(secret.createdDate),
    };
  });

  operations.set('DeleteSecret', async (members) => {
    const secretId = requiredSecretId(members);
    const recoveryWindowInDays = members.optionalInteger('RecoveryWindowInDays');
    const forceDeleteWithoutRecovery = members.optionalBoolean('ForceDeleteWithoutRecovery') ?? false;
    if (recoveryWindowInDays !== undefined && forceDeleteWithoutRecovery) {
      throw new SecretsManagerError(
        'InvalidParameterException',
        "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
      );
    }
    if (recoveryWindowInDays !== undefined && (recoveryWindowInDays < 7 || recoveryWindowInDays > 30)) {
      throw new SecretsManagerError(
        'InvalidParameterException',
        'The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).',
      );
    }

    return store.mutate(secretId, async (secret) => {
      const deletedAt = now();
      // AWS lets a force delete purge a secret that is already scheduled for deletion.
      if (forceDeleteWithoutRecovery) {
        await store.remove(secret.name);
        return { ARN: secret.arn, Name: secret.name, DeletionDate: epochSeconds(deletedAt) };
      }
      if (store.isScheduledForDeletion(secret)) {
        throw new SecretsManagerError(
          'InvalidRequestException',
          "You tried to perform the operation on a secret that's currently marked deleted.",
        );
      }
      secret.deletedDate = deletedAt;
      secret.deletionDate = deletedAt + (recoveryWindowInDays ?? 30) * DAY_MS;
      secret.lastChangedDate = deletedAt;
      await store.write(secret);
      return { ARN: secret.arn, Name: secret.name, DeletionDate: epochSeconds(secret.deletionDate) };
    });
  });

  operations.set('RestoreSecret', async (members) => {
    return store.mutate(requiredSecretId(members), async (secret) => {
      // Restoring a secret that is not scheduled for deletion succeeds and changes nothing.
      if (store.isScheduledForDeletion(secret)) {
        secret.deletedDate = undefined;
        secret.deletionDate = undefined;
        secret.lastChangedDate = now();
        await store.write(secret);
      }
      return { ARN: secret.arn, Name: secret.name };
    });
  });

  operations.set('ListSecrets', async (members) => {
    const includePlannedDeletion = members.optionalBoolean('IncludePlannedDeletion') ?? false;
    const maxResults = members.optionalInteger('MaxResults') ?? 100;
    if (maxResults < 1)
      throw modelValidationError('MaxResults', 'Member must have value greater than or equal to 1');
    if (maxResults > 100)
      throw modelValidationError('MaxResults', 'Member must have value less than or equal to 100');
    const nextToken = members.optionalString('NextToken', { min: 1, max: 4096 });
    const sortOrder = members.optionalString('SortOrder', { max: 4 }) ?? 'asc';
    if (sortOrder !== 'asc' && sortOrder !== 'desc') {
      throw modelValidationError('SortOrder', 'Member must satisfy enum value set: [asc, desc]');
    }
    const sortBy = members.optionalString('SortBy', { max: 32 }) ?? 'created-date';
    if (!['created-date', 'last-changed-date', 'last-accessed-date', 'name'].includes(sortBy)) {
      throw modelValidationError(
        'SortBy',
        'Member must satisfy enum value set: [created-date, last-accessed-date, last-changed-date, name]',
      );
    }
    const filters: ListFilter[] = (members.optionalObjectList('Filters', 10) ?? []).map((filter) => {
      const key = filter.requiredString('Key', { max: 32 });
      if (!FILTER_KEYS.has(key)) {
        throw modelValidationError(
          'Filters.member.key',
          'Member must satisfy enum value set: [all, description, name, tag-key, tag-value, primary-region, owning-service]',
        );
      }
      const values = filter.optionalStringList('Values', 10, { min: 1, max: 512 }) ?? [];
      return { key, values };
    });

    let offset = 0;
    if (nextToken !== undefined) {
      const decoded = Number(Buffer.from(nextToken, 'base64url').toString('utf8'));
      if (!Number.isInteger(decoded) || decoded < 0) {
        throw new SecretsManagerError('InvalidNextTokenException', 'The NextToken value is invalid.');
      }
      offset = decoded;
    }

    const sortKey = (secret: StoredSecret): number | string =>
      sortBy === 'name'
        ? secret.name
        : sortBy === 'last-changed-date'
          ? secret.lastChangedDate
          : secret.createdDate;
    const matching = (await store.list())
      .filter((secret) => includePlannedDeletion || !store.isScheduledForDeletion(secret))
      .filter((secret) => matchesFilters(secret, filters))
      .sort((a, b) => {
        const [left, right] = [sortKey(a), sortKey(b)];
        const order = left < right ? -1 : left > right ? 1 : a.name.localeCompare(b.name);
        return sortOrder === 'asc' ? order : -order;
      });
    const page = matching.slice(offset, offset + maxResults);
    const nextOffset = offset + page.length;
    return {
      SecretList: page.map((secret) => ({
        ARN: secret.arn,
        Name: secret.name,
        Description: secret.description,
        KmsKeyId: secret.kmsKeyId,
        LastChangedDate: epochSeconds(secret.lastChangedDate),
        DeletedDate: epochSeconds(secret.deletedDate),
        Tags: wireTags(secret),
        SecretVersionsToStages: versionIdsToStages(secret),
        CreatedDate: epochSeconds(secret.createdDate),
      })),
      NextToken:
        nextOffset < matching.length
          ? Buffer.from(String(nextOffset), 'utf8').toString('base64url')
          : undefined,
    };
  });

  operations.set('TagResource', async (members) => {
    const secretId = requiredSecretId(members);
    const tags = members.optionalTags('Tags');
    if (tags === undefined) throw modelValidationError('Tags', 'Member must not be null', true);
    return store.mutate(secretId, async (secret) => {
      if (store.isScheduledForDeletion(secret)) throw markedForDeletion();
      const byKey = new Map(secret.tags.map((tag) => [tag.key, tag]));
      for (const tag of tags) byKey.set(tag.key, tag);
      if (byKey.size > 50) {
        throw new SecretsManagerError('LimitExceededException', 'A secret can have at most 50 tags.');
      }
      secret.tags = [...byKey.values()];
      secret.lastChangedDate = now();
      await store.write(secret);
      return {};
    });
  });

  return operations;
}

/**
 * Starts a local Secrets Manager over the files in `options.dataDir`. Servers started over the same dataDir (in
 * this process or others) share every secret.
 */
export async function startSecretsManagerServer(
  options: SecretsManagerServerOptions,
): Promise<RunningSecretsManagerServer> {
  const region = options.region ?? 'us-east-1';
  const accountId = options.accountId ?? '000000000000';
  const now = options.now ?? Date.now;
  const arnPrefix = `arn:aws:secretsmanager:${region}:${accountId}:secret:`;
  const secretsDirectory = path.join(options.dataDir, 'secrets');
  await mkdir(secretsDirectory, { recursive: true, mode: 0o700 });
  // mkdir's mode applies only when it creates the directory; the values inside must stay private either way.
  await chmod(secretsDirectory, 0o700);

  const store = new SecretFileStore(secretsDirectory, now, arnPrefix);
  const operations = createOperations(store, now, arnPrefix);

  return startAwsJsonServer({
    targetPrefix: 'secretsmanager',
    // The parsing of members stays per service: their types and constraints are the service model's.
    operations: new Map(
      [...operations].map(([name, operation]) => [name, (body) => operation(new RequestMembers(body))]),
    ),
    logName: 'secrets-manager-server',
    internalError: { errorType: 'InternalServiceError', message: 'An error occurred on the server side.' },
    capitalizedMessageErrorTypes: MODELED_ERROR_TYPES,
    host: options.host,
    port: options.port,
  });
}

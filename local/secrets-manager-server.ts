/**
 * A local AWS Secrets Manager that speaks the service's real wire protocol (AWS JSON 1.1), so local mode and the
 * integration tests run the broker's production adapter (the real @aws-sdk/client-secrets-manager client) against
 * it unchanged. No emulator for this service exists on npm; this one covers the operations the broker and its tests
 * use, with AWS's validation rules, error types and messages, for the members they are sent with: CreateSecret,
 * GetSecretValue, DescribeSecret and DeleteSecret (lib/secret-store.ts); PutSecretValue (a rotation), RestoreSecret
 * and ListSecrets (tests). Any other member is refused, naming it (local/aws-json-request.ts); string secrets only.
 *
 * Storage: one JSON file per secret under `${dataDir}/secrets/`, named by a hash of the secret name, read on every
 * request and replaced atomically (temp file + rename) while holding a per-secret lock file. Several processes,
 * each embedding its own server over the same dataDir, therefore share one store, the way a fleet of Lambda
 * instances shares one AWS account.
 *
 * Local use only: values are stored unencrypted (files 0600 in a 0700 directory) and requests are not
 * authenticated. SigV4 signatures are deliberately not verified, so any credentials work.
 */
import { createHash, randomInt } from 'node:crypto';
import { type FileHandle, open, readdir, readFile, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { modelValidationError, operationsRefusing, type RequestMembers } from './aws-json-request';
import {
  AwsJsonError,
  type LocalServerOptions,
  type LocalServiceContext,
  type RunningAwsJsonServer,
  startLocalAwsServer,
} from './aws-json-server';
import {
  errnoCode,
  ignoreMissingFile,
  LocalStoreError,
  readJsonFile,
  writeJsonFileAtomically,
} from './private-files';

/** Where the store lives (`secrets/` inside `dataDir`; share it to share the store), and what goes into ARNs. */
export type SecretsManagerServerOptions = LocalServerOptions;
/** `url` goes to the SDK as `endpoint` (or AWS_ENDPOINT_URL_SECRETS_MANAGER); close() leaves the files. */
export type RunningSecretsManagerServer = RunningAwsJsonServer;

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
  'ResourceExistsException',
  'ResourceNotFoundException',
  'InternalServiceError',
]);

/** Errors reach the caller in the AWS JSON error shape; their messages never contain secret values. */
const smError = (errorType: string, message: string) => new AwsJsonError(errorType, message);

const secretNotFound = () =>
  smError('ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
const markedForDeletion = () =>
  smError(
    'InvalidRequestException',
    "You can't perform this operation on the secret because it was marked for deletion.",
  );

interface StoredTag {
  key: string;
  value: string;
}

interface StoredVersion {
  versionId: string;
  secretString: string;
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

function isErrnoError(error: unknown, code: string): boolean {
  return errnoCode(error) === code;
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
    const secret = await readJsonFile<StoredSecret>(filePath);
    if (!secret) return undefined;
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
    await writeJsonFileAtomically(this.fileFor(secret.name), secret);
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

/** AWS tag rules: up to 50 tags, keys of 1 to 128 characters, values of up to 256. */
function optionalTags(members: RequestMembers): StoredTag[] {
  return (members.optionalStructureList('Tags', 50) ?? []).map((tag) => ({
    key: tag.requiredString('Key', { max: 128 }),
    value: tag.optionalString('Value', { max: 256 }) ?? '',
  }));
}

/** SecretString, counted in UTF-8 bytes against AWS's quota. */
function optionalSecretString(members: RequestMembers): string | undefined {
  const secretString = members.optionalString('SecretString', { max: Number.MAX_SAFE_INTEGER });
  if (secretString !== undefined && Buffer.byteLength(secretString, 'utf8') > MAX_SECRET_VALUE_BYTES) {
    throw modelValidationError(
      'SecretString',
      `Member must have length less than or equal to ${MAX_SECRET_VALUE_BYTES}`,
    );
  }
  return secretString;
}

function requiredSecretId(members: RequestMembers): string {
  const secretId = members.requiredString('SecretId', { max: 2048 });
  // ARNs are resolved (or not found) later; anything else must be a well-formed name.
  if (!secretId.startsWith('arn:') && !SECRET_NAME_PATTERN.test(secretId)) {
    throw smError('ValidationException', INVALID_NAME_MESSAGE);
  }
  return secretId;
}

/** The SDK always fills ClientRequestToken (an idempotency token); raw callers must send one too. */
function requiredClientRequestToken(members: RequestMembers): string {
  const token = members.optionalString('ClientRequestToken', { min: 32, max: 64 });
  if (token === undefined) {
    throw smError(
      'InvalidRequestException',
      'You must provide a ClientRequestToken value. We recommend a UUID-type value.',
    );
  }
  return token;
}

function epochSeconds(ms: number | undefined): number | undefined {
  return ms === undefined ? undefined : ms / 1000;
}

/** What DescribeSecret and each ListSecrets entry say about a secret (never its value). */
function secretMetadata(secret: StoredSecret) {
  return {
    ARN: secret.arn,
    Name: secret.name,
    Description: secret.description,
    KmsKeyId: secret.kmsKeyId,
    LastChangedDate: epochSeconds(secret.lastChangedDate),
    DeletedDate: epochSeconds(secret.deletedDate),
    Tags: secret.tags.length > 0 ? secret.tags.map((tag) => ({ Key: tag.key, Value: tag.value })) : undefined,
    CreatedDate: epochSeconds(secret.createdDate),
  };
}

/** Versions with staging labels; unlabeled (deprecated) versions are not listed, as on AWS. */
function versionIdsToStages(secret: StoredSecret): Record<string, string[]> | undefined {
  const labeled = secret.versions.filter((version) => version.stages.length > 0);
  if (labeled.length === 0) return undefined;
  return Object.fromEntries(labeled.map((version) => [version.versionId, version.stages]));
}

/**
 * Adds a version as AWSCURRENT: the version that had it becomes AWSPREVIOUS (the one before loses its label). The
 * oldest unlabeled versions are dropped beyond AWS's limit.
 */
function addCurrentVersion(secret: StoredSecret, version: StoredVersion): void {
  for (const existing of secret.versions) {
    const wasCurrent = existing.stages.includes(STAGE_CURRENT);
    existing.stages = existing.stages.filter((stage) => stage !== STAGE_CURRENT && stage !== STAGE_PREVIOUS);
    if (wasCurrent) existing.stages.push(STAGE_PREVIOUS);
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

/** Every operation refuses the members it does not implement with InvalidRequestException. */
const operation = operationsRefusing('InvalidRequestException');

/** The supported operations, by the name that follows `secretsmanager.` in X-Amz-Target. */
function createOperations(context: LocalServiceContext) {
  const { now } = context;
  const arnPrefix = `${context.arnPrefix}secret:`;
  const store = new SecretFileStore(context.directory, now, arnPrefix);
  const createSecret = operation(
    ['Name', 'ClientRequestToken', 'Description', 'KmsKeyId', 'SecretString', 'Tags'],
    async (members) => {
      const name = members.requiredString('Name', { max: 512 });
      if (!SECRET_NAME_PATTERN.test(name)) throw smError('ValidationException', INVALID_NAME_MESSAGE);
      const versionId = requiredClientRequestToken(members);
      const description = members.optionalString('Description', { max: 2048 });
      const kmsKeyId = members.optionalString('KmsKeyId', { max: 2048 });
      const secretString = optionalSecretString(members);
      const tags = optionalTags(members);

      return store.withLock(name, async () => {
        const existing = await store.readByName(name);
        if (existing && store.isScheduledForDeletion(existing)) {
          throw smError(
            'InvalidRequestException',
            "You can't create this secret because a secret with this name is already scheduled for deletion.",
          );
        }
        if (existing) {
          throw smError(
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
          versions:
            secretString === undefined
              ? []
              : [{ versionId, secretString, stages: [STAGE_CURRENT], createdDate }],
        };
        await store.write(secret);
        return {
          ARN: secret.arn,
          Name: secret.name,
          VersionId: secretString === undefined ? undefined : versionId,
        };
      });
    },
  );

  const getSecretValue = operation(['SecretId'], async (members) => {
    const secret = await store.resolve(requiredSecretId(members));
    if (store.isScheduledForDeletion(secret)) throw markedForDeletion();
    const version = secret.versions.find((candidate) => candidate.stages.includes(STAGE_CURRENT));
    if (!version) {
      throw smError(
        'ResourceNotFoundException',
        `Secrets Manager can't find the specified secret value for staging label: ${STAGE_CURRENT}`,
      );
    }
    return {
      ARN: secret.arn,
      Name: secret.name,
      VersionId: version.versionId,
      SecretString: version.secretString,
      VersionStages: version.stages,
      CreatedDate: epochSeconds(version.createdDate),
    };
  });

  const putSecretValue = operation(['SecretId', 'ClientRequestToken', 'SecretString'], async (members) => {
    const secretId = requiredSecretId(members);
    const versionId = requiredClientRequestToken(members);
    const secretString = optionalSecretString(members);
    if (secretString === undefined) {
      throw smError('InvalidRequestException', 'You must provide either SecretString or SecretBinary.');
    }
    return store.mutate(secretId, async (secret) => {
      if (store.isScheduledForDeletion(secret)) throw markedForDeletion();
      const existing = secret.versions.find((version) => version.versionId === versionId);
      if (existing) {
        // The ClientRequestToken makes retries idempotent: the same value again is a no-op, another is refused.
        if (existing.secretString !== secretString) {
          throw smError(
            'ResourceExistsException',
            "You can't modify an existing version, you can only create new versions.",
          );
        }
        return { ARN: secret.arn, Name: secret.name, VersionId: versionId, VersionStages: existing.stages };
      }
      const createdDate = now();
      addCurrentVersion(secret, { versionId, secretString, stages: [STAGE_CURRENT], createdDate });
      secret.lastChangedDate = createdDate;
      await store.write(secret);
      return { ARN: secret.arn, Name: secret.name, VersionId: versionId, VersionStages: [STAGE_CURRENT] };
    });
  });

  const describeSecret = operation(['SecretId'], async (members) => {
    // Works on secrets scheduled for deletion: it is how a caller sees DeletedDate.
    const secret = await store.resolve(requiredSecretId(members));
    return { ...secretMetadata(secret), VersionIdsToStages: versionIdsToStages(secret) };
  });

  const deleteSecret = operation(
    ['SecretId', 'RecoveryWindowInDays', 'ForceDeleteWithoutRecovery'],
    async (members) => {
      const secretId = requiredSecretId(members);
      const recoveryWindowInDays = members.optionalInteger('RecoveryWindowInDays');
      const forceDeleteWithoutRecovery = members.optionalBoolean('ForceDeleteWithoutRecovery') ?? false;
      if (recoveryWindowInDays !== undefined && forceDeleteWithoutRecovery) {
        throw smError(
          'InvalidParameterException',
          "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
        );
      }
      if (recoveryWindowInDays !== undefined && (recoveryWindowInDays < 7 || recoveryWindowInDays > 30)) {
        throw smError(
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
          throw smError(
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
    },
  );

  const restoreSecret = operation(['SecretId'], async (members) =>
    store.mutate(requiredSecretId(members), async (secret) => {
      // Restoring a secret that is not scheduled for deletion succeeds and changes nothing.
      if (store.isScheduledForDeletion(secret)) {
        secret.deletedDate = undefined;
        secret.deletionDate = undefined;
        secret.lastChangedDate = now();
        await store.write(secret);
      }
      return { ARN: secret.arn, Name: secret.name };
    }),
  );

  /** In order of creation (AWS's default), a page of MaxResults at a time. */
  const listSecrets = operation(['IncludePlannedDeletion', 'MaxResults', 'NextToken'], async (members) => {
    const includePlannedDeletion = members.optionalBoolean('IncludePlannedDeletion') ?? false;
    const maxResults = members.optionalInteger('MaxResults', { min: 1, max: 100 }) ?? 100;
    const nextToken = members.optionalString('NextToken', { min: 1, max: 4096 });
    let offset = 0;
    if (nextToken !== undefined) {
      offset = Number(Buffer.from(nextToken, 'base64url').toString('utf8'));
      if (!Number.isInteger(offset) || offset < 0) {
        throw smError('InvalidNextTokenException', 'The NextToken value is invalid.');
      }
    }
    const matching = (await store.list())
      .filter((secret) => includePlannedDeletion || !store.isScheduledForDeletion(secret))
      .sort((a, b) => a.createdDate - b.createdDate || a.name.localeCompare(b.name));
    const page = matching.slice(offset, offset + maxResults);
    const nextOffset = offset + page.length;
    return {
      SecretList: page.map((secret) => ({
        ...secretMetadata(secret),
        SecretVersionsToStages: versionIdsToStages(secret),
      })),
      NextToken:
        nextOffset < matching.length
          ? Buffer.from(String(nextOffset), 'utf8').toString('base64url')
          : undefined,
    };
  });

  return new Map([
    ['CreateSecret', createSecret],
    ['GetSecretValue', getSecretValue],
    ['PutSecretValue', putSecretValue],
    ['DescribeSecret', describeSecret],
    ['DeleteSecret', deleteSecret],
    ['RestoreSecret', restoreSecret],
    ['ListSecrets', listSecrets],
  ]);
}

/**
 * Starts a local Secrets Manager over the files in `options.dataDir`. Servers started over the same dataDir (in
 * this process or others) share every secret.
 */
export async function startSecretsManagerServer(
  options: SecretsManagerServerOptions,
): Promise<RunningSecretsManagerServer> {
  return startLocalAwsServer(options, {
    arnService: 'secretsmanager',
    directoryName: 'secrets',
    targetPrefix: 'secretsmanager',
    operations: createOperations,
    logName: 'secrets-manager-server',
    internalError: { errorType: 'InternalServiceError', message: 'An error occurred on the server side.' },
    capitalizedMessageErrorTypes: MODELED_ERROR_TYPES,
  });
}

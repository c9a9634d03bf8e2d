/**
 * Asymmetric signing keys for the local KMS (local/kms-server.ts), as the KMS API defines them, so the broker's
 * `kms_certificate` credential runs its production code path locally: CreateKey (KeySpec RSA_2048 / RSA_3072,
 * KeyUsage SIGN_VERIFY, Tags), Sign and Verify (RSASSA_PSS_SHA_256 and RSASSA_PKCS1_V1_5_SHA_256, and their
 * SHA-384/512 siblings; MessageType RAW), GetPublicKey, ScheduleKeyDeletion, ListResourceTags, and DescribeKey of
 * these keys. Everything else (symmetric keys, aliases) is left to the server's own operations.
 *
 * Storage: one file per key (`asym-<key id>.json`, 0600) beside the symmetric keys, holding the private key as
 * PKCS#8 PEM. Local use only, like the rest of the server: the private key never leaves this process through
 * the API, exactly as on KMS, but it is stored unencrypted on disk.
 */
import {
  constants,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  randomUUID,
  sign,
  verify,
} from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { type ModeledOperation, operationsRefusing, type RequestMembers } from './aws-json-request';
import { AwsJsonError, type AwsJsonOperation, type JsonObject } from './aws-json-server';
import { readJsonFile, writeJsonFileAtomically } from './private-files';

const generateRsaKeyPair = promisify(generateKeyPair);

const KEY_SPECS: Record<string, number> = { RSA_2048: 2048, RSA_3072: 3072 };
const SIGNING_ALGORITHMS: Record<string, { hash: string; pss: boolean }> = {
  RSASSA_PSS_SHA_256: { hash: 'sha256', pss: true },
  RSASSA_PSS_SHA_384: { hash: 'sha384', pss: true },
  RSASSA_PSS_SHA_512: { hash: 'sha512', pss: true },
  RSASSA_PKCS1_V1_5_SHA_256: { hash: 'sha256', pss: false },
  RSASSA_PKCS1_V1_5_SHA_384: { hash: 'sha384', pss: false },
  RSASSA_PKCS1_V1_5_SHA_512: { hash: 'sha512', pss: false },
};
const KEY_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MAX_MESSAGE_BYTES = 4096;
const DAY_MS = 24 * 60 * 60 * 1000;

interface Tag {
  TagKey: string;
  TagValue: string;
}

/** One asymmetric key file. Dates are epoch milliseconds. */
interface StoredAsymmetricKey {
  formatVersion: 1;
  keyId: string;
  arn: string;
  description: string;
  creationDate: number;
  keySpec: string;
  privateKeyPem: string;
  tags: Tag[];
  /** Set by ScheduleKeyDeletion: the key is PendingDeletion and can no longer sign. */
  deletionDate?: number;
}

export interface AsymmetricKeyOptions {
  /** The KMS server's directory (the key files live beside the symmetric ones). */
  directory: string;
  /** `arn:aws:kms:<region>:<account>:` */
  arnPrefix: string;
  accountId: string;
  now: () => number;
}

/** Whether a CreateKey request asks for an asymmetric signing key (the only kind this module creates). */
function wantsSigningKey(body: JsonObject): boolean {
  const spec = body.KeySpec;
  return body.KeyUsage === 'SIGN_VERIFY' || (typeof spec === 'string' && spec.startsWith('RSA_'));
}

/**
 * Adds asymmetric signing keys to the local KMS's operations: returns a new operation map in which CreateKey of a
 * SIGN_VERIFY key, DescribeKey of such a key, and the signing operations are answered here, and every other
 * request goes to the server's own operation.
 */
export function withAsymmetricKeys(
  operations: ReadonlyMap<string, AwsJsonOperation>,
  options: AsymmetricKeyOptions,
): Map<string, AwsJsonOperation> {
  const keyFile = (keyId: string) => path.join(options.directory, `asym-${keyId}.json`);

  const read = (keyId: string) => readJsonFile<StoredAsymmetricKey>(keyFile(keyId));
  const write = (key: StoredAsymmetricKey) => writeJsonFileAtomically(keyFile(key.keyId), key);

  /** The asymmetric key a KeyId (id or key ARN) names, or undefined when it names none. */
  const find = async (keyIdentifier: string): Promise<StoredAsymmetricKey | undefined> => {
    const id = keyIdentifier.startsWith(`${options.arnPrefix}key/`)
      ? keyIdentifier.slice(`${options.arnPrefix}key/`.length)
      : keyIdentifier;
    return KEY_ID_PATTERN.test(id) ? read(id) : undefined;
  };

  const resolve = async (members: RequestMembers): Promise<StoredAsymmetricKey> => {
    const keyIdentifier = members.requiredString('KeyId', { max: 2048 });
    const key = await find(keyIdentifier);
    if (key) return key;
    // A symmetric key (or an alias of one) exists but cannot sign; DescribeKey throws NotFound for anything else.
    await operations.get('DescribeKey')?.({ KeyId: keyIdentifier });
    throw new AwsJsonError(
      'InvalidKeyUsageException',
      `${keyIdentifier} key usage is ENCRYPT_DECRYPT which is not valid for this operation.`,
    );
  };

  const usable = (key: StoredAsymmetricKey): StoredAsymmetricKey => {
    if (key.deletionDate !== undefined) {
      throw new AwsJsonError('KMSInvalidStateException', `${key.arn} is pending deletion.`);
    }
    return key;
  };

  const metadata = (key: StoredAsymmetricKey): JsonObject => ({
    AWSAccountId: options.accountId,
    KeyId: key.keyId,
    Arn: key.arn,
    CreationDate: key.creationDate / 1000,
    Enabled: key.deletionDate === undefined,
    Description: key.description,
    KeyUsage: 'SIGN_VERIFY',
    KeyState: key.deletionDate === undefined ? 'Enabled' : 'PendingDeletion',
    ...(key.deletionDate === undefined ? {} : { DeletionDate: key.deletionDate / 1000 }),
    Origin: 'AWS_KMS',
    KeyManager: 'CUSTOMER',
    CustomerMasterKeySpec: key.keySpec,
    KeySpec: key.keySpec,
    SigningAlgorithms: Object.keys(SIGNING_ALGORITHMS),
    MultiRegion: false,
  });

  const signingAlgorithm = (members: RequestMembers) => {
    const name = members.requiredString('SigningAlgorithm', { max: 64 });
    const algorithm = SIGNING_ALGORITHMS[name];
    if (!algorithm) {
      throw new AwsJsonError(
        'InvalidKeyUsageException',
        `The signing algorithm ${name} is not valid for this key.`,
      );
    }
    const messageType = members.optionalString('MessageType', { max: 64 }) ?? 'RAW';
    if (messageType !== 'RAW') {
      throw new AwsJsonError(
        'UnsupportedOperationException',
        `MessageType ${messageType} is not supported by this local KMS server.`,
      );
    }
    return { name, ...algorithm };
  };

  const padding = (pss: boolean) =>
    pss
      ? // KMS's PSS uses a salt as long as the digest, as JWS's PS256 requires.
        { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }
      : { padding: constants.RSA_PKCS1_PADDING };

  // Each operation names the members it implements; any other is refused, naming it (local/aws-json-request.ts).
  const operation = operationsRefusing('UnsupportedOperationException');
  const own = new Map<string, readonly [readonly string[], ModeledOperation]>();

  own.set('CreateKey', [
    ['KeySpec', 'KeyUsage', 'Description', 'Tags'],
    async (members) => {
      const keySpec = members.optionalString('KeySpec', { max: 64 }) ?? '';
      const keyUsage = members.optionalString('KeyUsage', { max: 64 });
      const bits = KEY_SPECS[keySpec];
      if (keyUsage !== 'SIGN_VERIFY' || bits === undefined) {
        throw new AwsJsonError(
          'UnsupportedOperationException',
          `A key of KeyUsage ${keyUsage ?? 'ENCRYPT_DECRYPT'} and KeySpec ${keySpec} is not supported by this local KMS server (asymmetric keys: SIGN_VERIFY with RSA_2048 or RSA_3072).`,
        );
      }
      const tags: Tag[] = (members.optionalStructureList('Tags', 50) ?? []).map((tag) => ({
        TagKey: tag.requiredString('TagKey', { max: 128 }),
        TagValue: tag.requiredString('TagValue', { min: 0, max: 256 }),
      }));
      const { privateKey } = await generateRsaKeyPair('rsa', { modulusLength: bits });
      const keyId = randomUUID();
      const key: StoredAsymmetricKey = {
        formatVersion: 1,
        keyId,
        arn: `${options.arnPrefix}key/${keyId}`,
        description: members.optionalString('Description', { max: 8192 }) ?? '',
        creationDate: options.now(),
        keySpec,
        privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }) as string,
        tags,
      };
      await write(key);
      return { KeyMetadata: metadata(key) };
    },
  ]);

  own.set('DescribeKey', [['KeyId'], async (members) => ({ KeyMetadata: metadata(await resolve(members)) })]);

  own.set('GetPublicKey', [
    ['KeyId'],
    async (members) => {
      const key = usable(await resolve(members));
      const der = createPublicKey(key.privateKeyPem).export({ format: 'der', type: 'spki' });
      return {
        KeyId: key.arn,
        PublicKey: der.toString('base64'),
        CustomerMasterKeySpec: key.keySpec,
        KeySpec: key.keySpec,
        KeyUsage: 'SIGN_VERIFY',
        SigningAlgorithms: Object.keys(SIGNING_ALGORITHMS),
      };
    },
  ]);

  own.set('Sign', [
    ['KeyId', 'Message', 'MessageType', 'SigningAlgorithm'],
    async (members) => {
      const key = usable(await resolve(members));
      const message = members.requiredBlob('Message', { min: 1, max: MAX_MESSAGE_BYTES });
      const algorithm = signingAlgorithm(members);
      const signature = sign(algorithm.hash, message, {
        key: createPrivateKey(key.privateKeyPem),
        ...padding(algorithm.pss),
      });
      return { KeyId: key.arn, Signature: signature.toString('base64'), SigningAlgorithm: algorithm.name };
    },
  ]);

  own.set('Verify', [
    ['KeyId', 'Message', 'MessageType', 'Signature', 'SigningAlgorithm'],
    async (members) => {
      const key = usable(await resolve(members));
      const message = members.requiredBlob('Message', { min: 1, max: MAX_MESSAGE_BYTES });
      const signature = members.requiredBlob('Signature', { min: 1, max: 6144 });
      const algorithm = signingAlgorithm(members);
      const valid = verify(
        algorithm.hash,
        message,
        { key: createPublicKey(key.privateKeyPem), ...padding(algorithm.pss) },
        signature,
      );
      if (!valid) throw new AwsJsonError('KMSInvalidSignatureException', 'The signature is not valid.');
      return { KeyId: key.arn, SignatureValid: true, SigningAlgorithm: algorithm.name };
    },
  ]);

  own.set('ScheduleKeyDeletion', [
    ['KeyId', 'PendingWindowInDays'],
    async (members) => {
      const key = await resolve(members);
      const days = members.optionalInteger('PendingWindowInDays', { min: 7, max: 30 }) ?? 30;
      if (key.deletionDate !== undefined) {
        throw new AwsJsonError('KMSInvalidStateException', `${key.arn} is pending deletion.`);
      }
      const scheduled = { ...key, deletionDate: options.now() + days * DAY_MS };
      await write(scheduled);
      return {
        KeyId: key.arn,
        DeletionDate: (scheduled.deletionDate as number) / 1000,
        KeyState: 'PendingDeletion',
        PendingWindowInDays: days,
      };
    },
  ]);

  own.set('ListResourceTags', [
    ['KeyId'],
    async (members) => ({ Tags: (await resolve(members)).tags, Truncated: false }),
  ]);

  const combined = new Map(operations);
  for (const [name, [members, run]] of own) {
    const fallback = operations.get(name);
    const implemented = operation(members, run);
    combined.set(name, async (body) => {
      if (name === 'CreateKey') {
        if (wantsSigningKey(body) || !fallback) return implemented(body);
        return fallback(body);
      }
      // Keys this module does not hold (symmetric keys, aliases) are the server's own business.
      const keyId = body.KeyId;
      if (fallback && (typeof keyId !== 'string' || !(await find(keyId)))) return fallback(body);
      return implemented(body);
    });
  }
  return combined;
}

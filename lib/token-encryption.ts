import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { DecryptCommandInput, GenerateDataKeyCommandInput } from '@aws-sdk/client-kms';
import type { CallOptions } from './call-options';
import { StoreError, storeFailure } from './errors';

/**
 * The KMS operations of envelope encryption (this file and lib/authorization-code/sealer.ts), with the SDK's input
 * shapes and binary fields as bytes. The one production adapter is functions/aws-json.ts's JSON-protocol client
 * (functions/aws-clients.ts); errors are named like the SDK's (`TimeoutError`, `AbortError`, KMS's error types).
 */
export interface KmsDataKeys {
  generateDataKey(
    input: GenerateDataKeyCommandInput,
    options?: CallOptions,
  ): Promise<{ Plaintext?: Uint8Array; CiphertextBlob?: Uint8Array }>;
  decrypt(input: DecryptCommandInput, options?: CallOptions): Promise<{ Plaintext?: Uint8Array }>;
}

/**
 * What a sealed token is bound to: opening it under any other context fails. The version binds it to one
 * configuration of the service, so a token of an older configuration cannot be replayed into the current slot.
 */
export interface SealContext {
  service: string;
  version: string;
  scope: string;
}

/** A token encrypted under a data key, and that data key encrypted by KMS. Both base64. */
export interface SealedToken {
  ciphertext: string;
  encryptedKey: string;
}

/**
 * Encrypts cached tokens so that read access to the token cache table alone reveals nothing: opening one needs
 * kms:Decrypt on the broker's key with the token's encryption context (service, version and scope).
 */
export interface TokenSealer {
  seal(token: string, context: SealContext, options?: CallOptions): Promise<SealedToken>;
  open(sealed: SealedToken, context: SealContext, options?: CallOptions): Promise<string>;
}

export interface KmsEnvelopeEncryptionOptions {
  client: KmsDataKeys;
  /** KMS key id, ARN or alias. */
  keyId: string;
  now?: () => number;
  /** A data key is used to seal for at most this long, and kept for opening at most this long. */
  maxKeyAgeMs?: number;
  /** A data key seals at most this many tokens. */
  maxKeyUses?: number;
  /** At most this many data keys are held in memory (each direction). */
  maxCachedKeys?: number;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;
/** The `purpose` of every token data key's encryption context; IAM conditions on it (infra/). */
export const TOKEN_SEAL_PURPOSE = 'token-broker:token-cache';

/** The KMS encryption context; also the AES-GCM associated data, in a canonical order. */
function encryptionContext(context: SealContext): Record<string, string> {
  return {
    purpose: TOKEN_SEAL_PURPOSE,
    scope: context.scope,
    service: context.service,
    version: context.version,
  };
}

const aad = (context: SealContext): Buffer => Buffer.from(JSON.stringify(encryptionContext(context)), 'utf8');

interface DataKey {
  plaintext: Buffer;
  encryptedKey: string;
  createdAt: number;
  uses: number;
}

/**
 * Envelope encryption with KMS GenerateDataKey and AES-256-GCM. Data keys are cached per container, bounded in
 * count and age, so most seals and opens need no KMS call.
 */
export class KmsEnvelopeEncryption implements TokenSealer {
  private readonly client: KmsDataKeys;
  private readonly keyId: string;
  private readonly now: () => number;
  private readonly maxKeyAgeMs: number;
  private readonly maxKeyUses: number;
  private readonly maxCachedKeys: number;
  /** Sealing keys by encryption context. */
  private readonly sealing = new Map<string, DataKey>();
  /** Opening keys by encrypted data key. */
  private readonly opening = new Map<string, { plaintext: Buffer; createdAt: number }>();

  constructor(options: KmsEnvelopeEncryptionOptions) {
    this.client = options.client;
    this.keyId = options.keyId;
    this.now = options.now ?? Date.now;
    this.maxKeyAgeMs = options.maxKeyAgeMs ?? 5 * 60_000;
    this.maxKeyUses = options.maxKeyUses ?? 1000;
    this.maxCachedKeys = options.maxCachedKeys ?? 100;
  }

  private bounded<V>(map: Map<string, V>, key: string, value: V): void {
    map.delete(key);
    map.set(key, value);
    if (map.size > this.maxCachedKeys) map.delete(map.keys().next().value as string);
  }

  private async sealingKey(context: SealContext, options?: CallOptions): Promise<DataKey> {
    const id = JSON.stringify(encryptionContext(context));
    const cached = this.sealing.get(id);
    if (cached && this.now() - cached.createdAt < this.maxKeyAgeMs && cached.uses < this.maxKeyUses)
      return cached;
    let out: { Plaintext?: Uint8Array; CiphertextBlob?: Uint8Array };
    try {
      out = await this.client.generateDataKey(
        {
          KeyId: this.keyId,
          KeySpec: 'AES_256',
          EncryptionContext: encryptionContext(context),
        },
        options,
      );
    } catch (error) {
      throw storeFailure('generating a token data key failed', error);
    }
    if (!out.Plaintext || !out.CiphertextBlob) throw new StoreError('KMS returned no data key');
    const key: DataKey = {
      plaintext: Buffer.from(out.Plaintext),
      encryptedKey: Buffer.from(out.CiphertextBlob).toString('base64'),
      createdAt: this.now(),
      uses: 0,
    };
    this.bounded(this.sealing, id, key);
    this.bounded(this.opening, key.encryptedKey, { plaintext: key.plaintext, createdAt: key.createdAt });
    return key;
  }

  async seal(token: string, context: SealContext, options?: CallOptions): Promise<SealedToken> {
    const key = await this.sealingKey(context, options);
    key.uses++;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key.plaintext, iv);
    cipher.setAAD(aad(context));
    const body = Buffer.concat([cipher.update(token, 'utf8'), cipher.final()]);
    return {
      ciphertext: Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64'),
      encryptedKey: key.encryptedKey,
    };
  }

  private async openingKey(
    encryptedKey: string,
    context: SealContext,
    options?: CallOptions,
  ): Promise<Buffer> {
    const cached = this.opening.get(encryptedKey);
    if (cached && this.now() - cached.createdAt < this.maxKeyAgeMs) return cached.plaintext;
    let out: { Plaintext?: Uint8Array };
    try {
      out = await this.client.decrypt(
        {
          CiphertextBlob: Buffer.from(encryptedKey, 'base64'),
          EncryptionContext: encryptionContext(context),
          KeyId: this.keyId,
        },
        options,
      );
    } catch (error) {
      throw storeFailure('decrypting a token data key failed', error);
    }
    if (!out.Plaintext) throw new StoreError('KMS returned no plaintext data key');
    const plaintext = Buffer.from(out.Plaintext);
    this.bounded(this.opening, encryptedKey, { plaintext, createdAt: this.now() });
    return plaintext;
  }

  async open(sealed: SealedToken, context: SealContext, options?: CallOptions): Promise<string> {
    const key = await this.openingKey(sealed.encryptedKey, context, options);
    const raw = Buffer.from(sealed.ciphertext, 'base64');
    if (raw.length <= IV_BYTES + TAG_BYTES) throw new StoreError('sealed token is truncated');
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES));
      decipher.setAAD(aad(context));
      decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString(
        'utf8',
      );
    } catch (error) {
      // Tampered, or moved to another service, version or scope: the associated data no longer matches.
      throw new StoreError('sealed token failed authentication', { cause: error });
    }
  }
}

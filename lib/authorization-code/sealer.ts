import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { StoreError } from '../errors';
import type { KmsDataKeys } from '../token-encryption';

/** Why a value is sealed; part of the KMS encryption context, so IAM can condition on it (infra/). */
export type SealPurpose = 'token-broker:refresh-token' | 'token-broker:pkce-verifier';

/** What a sealed value is bound to: opening it under another purpose, service or user_key fails. */
export interface UserSealContext {
  purpose: SealPurpose;
  service: string;
  user_key: string;
}

/** A value encrypted under a fresh data key, and that data key encrypted by KMS (both base64). */
export interface SealedValue {
  ciphertext: string;
  encryptedKey: string;
}

/** Seals a user's refresh token or PKCE verifier; the DynamoDB items hold only the sealed form. */
export interface UserSecretSealer {
  seal(value: string, context: UserSealContext): Promise<SealedValue>;
  open(sealed: SealedValue, context: UserSealContext): Promise<string>;
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** The encryption context in a canonical order; also the AES-GCM associated data. */
function encryptionContext(context: UserSealContext): Record<string, string> {
  return { purpose: context.purpose, service: context.service, user_key: context.user_key };
}

/**
 * KMS envelope encryption (GenerateDataKey, AES-256-GCM) with one data key per sealed value: refresh tokens are
 * written about once an hour per user and verifiers once per consent, so no data-key cache is worth its risk.
 */
export class KmsUserSecretSealer implements UserSecretSealer {
  private readonly client: KmsDataKeys;
  private readonly keyId: string;

  constructor(options: { client: KmsDataKeys; keyId: string }) {
    this.client = options.client;
    this.keyId = options.keyId;
  }

  async seal(value: string, context: UserSealContext): Promise<SealedValue> {
    let out: { Plaintext?: Uint8Array; CiphertextBlob?: Uint8Array };
    try {
      out = await this.client.generateDataKey({
        KeyId: this.keyId,
        KeySpec: 'AES_256',
        EncryptionContext: encryptionContext(context),
      });
    } catch (error) {
      throw new StoreError('generating a data key failed', { cause: error });
    }
    if (!out.Plaintext || !out.CiphertextBlob) throw new StoreError('KMS returned no data key');
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', Buffer.from(out.Plaintext), iv);
    cipher.setAAD(Buffer.from(JSON.stringify(encryptionContext(context))));
    const body = Buffer.concat([cipher.update(value, 'utf8'), cipher.final()]);
    return {
      ciphertext: Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64'),
      encryptedKey: Buffer.from(out.CiphertextBlob).toString('base64'),
    };
  }

  async open(sealed: SealedValue, context: UserSealContext): Promise<string> {
    let out: { Plaintext?: Uint8Array };
    try {
      out = await this.client.decrypt({
        CiphertextBlob: Buffer.from(sealed.encryptedKey, 'base64'),
        EncryptionContext: encryptionContext(context),
        KeyId: this.keyId,
      });
    } catch (error) {
      throw new StoreError('decrypting a data key failed', { cause: error });
    }
    if (!out.Plaintext) throw new StoreError('KMS returned no plaintext data key');
    const raw = Buffer.from(sealed.ciphertext, 'base64');
    if (raw.length <= IV_BYTES + TAG_BYTES) throw new StoreError('sealed value is truncated');
    try {
      const decipher = createDecipheriv('aes-256-gcm', Buffer.from(out.Plaintext), raw.subarray(0, IV_BYTES));
      decipher.setAAD(Buffer.from(JSON.stringify(encryptionContext(context))));
      decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString(
        'utf8',
      );
    } catch (error) {
      throw new StoreError('sealed value failed authentication', { cause: error });
    }
  }
}

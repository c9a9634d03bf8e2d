import { ValidationError } from './errors';
import type { SecretDescription } from './secret-store';

/**
 * The tag the broker puts on every secret it creates (value: the service's name). A secret carrying it belongs
 * to that service and to no other.
 */
export const MANAGED_SECRET_TAG = 'token-broker:service';

/** The config fields that reference an existing secret. */
export type SecretReferenceField = 'config.client_secret_arn' | 'config.certificate_secret_arn';

/**
 * A complete Secrets Manager ARN: `...:secret:<name>-<6 characters>`. Secrets Manager resolves a partial ARN
 * (without the suffix) too, and one partial ARN can name a different secret than it seems to, so only the
 * complete form is accepted.
 */
const COMPLETE_SECRET_ARN =
  /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:([A-Za-z0-9/_+=.@-]+)-[A-Za-z0-9]{6}$/;

/** The version part of a managed secret's name (ServiceAdministration gives each version a random UUID). */
const VERSION_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function refused(problem: string, field: SecretReferenceField): ValidationError {
  return new ValidationError(`${field}: ${problem}`, { context: { field } });
}

/**
 * Which existing secrets an administrator may point a service at (`config.client_secret_arn`): those under the
 * broker's own name prefix, and those the operator lists explicitly; never a secret the broker manages for
 * another service (named `<prefix><service>/<version>`, tagged {@link MANAGED_SECRET_TAG}). Anything else would
 * let an administrator make the broker read (and send to Entra) a secret it was never meant to touch, or borrow
 * another application's credential and receive its tokens.
 */
export class SecretReferencePolicy {
  private readonly prefix: string;
  private readonly allowed: readonly string[];

  /** @param allowedArns exact ARNs, or ARN prefixes ending in `*`. */
  constructor(prefix: string, allowedArns: string | readonly string[] = []) {
    this.prefix = prefix;
    const list = typeof allowedArns === 'string' ? allowedArns.split(',') : allowedArns;
    this.allowed = list.map((a) => a.trim()).filter((a) => a.length > 0);
  }

  /** The service whose managed secret this name is (`<prefix><service>/<uuid>`), if it has that shape. */
  private managedOwnerOf(secretName: string): string | undefined {
    if (!secretName.startsWith(this.prefix)) return undefined;
    const parts = secretName.slice(this.prefix.length).split('/');
    return parts.length === 2 && VERSION_PATTERN.test(parts[1] as string) ? parts[0] : undefined;
  }

  /**
   * Checks what the ARN itself shows, before any call: a complete ARN, under the prefix or listed, not named as
   * another service's managed secret. Throws a ValidationError naming the field.
   */
  assertAllowed(
    arn: string,
    service: string,
    field: SecretReferenceField = 'config.client_secret_arn',
  ): void {
    const name = COMPLETE_SECRET_ARN.exec(arn)?.[1];
    if (name === undefined) {
      throw refused(
        'must be the complete ARN of the secret, ending in the 6-character suffix Secrets Manager adds (as DescribeSecret returns it)',
        field,
      );
    }
    const owner = this.managedOwnerOf(name);
    if (owner !== undefined && owner !== service) {
      throw refused(
        'is a secret the broker manages for another service; a service may only use its own',
        field,
      );
    }
    if (name.startsWith(this.prefix)) return;
    const listed = this.allowed.some((a) => (a.endsWith('*') ? arn.startsWith(a.slice(0, -1)) : a === arn));
    if (listed) return;
    throw refused(
      `the secret must be named under "${this.prefix}" or be listed in TOKEN_BROKER_ALLOWED_SECRET_ARNS`,
      field,
    );
  }

  /**
   * Checks what DescribeSecret says about the secret `arn` names: it exists and is not scheduled for deletion,
   * `arn` is its complete ARN, and neither its tag nor its name makes it another service's managed secret.
   */
  assertUsable(
    arn: string,
    described: SecretDescription | undefined,
    service: string,
    field: SecretReferenceField = 'config.client_secret_arn',
  ): void {
    if (!described || described.deleted) {
      throw refused('no such secret (or it is scheduled for deletion)', field);
    }
    if (described.arn !== arn) {
      throw refused('must be the complete ARN of the secret, exactly as DescribeSecret returns it', field);
    }
    const taggedOwner = described.tags[MANAGED_SECRET_TAG];
    const namedOwner = this.managedOwnerOf(described.name);
    if (
      (taggedOwner !== undefined && taggedOwner !== service) ||
      (namedOwner !== undefined && namedOwner !== service)
    ) {
      throw refused(
        'is a secret the broker manages for another service; a service may only use its own',
        field,
      );
    }
  }
}

/** An entry of the operator's list: a secret ARN, or an ARN prefix ending in `*` (at least one name character). */
const ALLOWED_SECRET_ARN_ENTRY =
  /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+\*?$/;

/**
 * What is wrong with the entries of an operator's list of referenced secrets (TOKEN_BROKER_ALLOWED_SECRET_ARNS,
 * the construct's `allowedSecretArns`), one message per bad entry. {@link SecretReferencePolicy} reads a trailing
 * `*` as a prefix, and the construct grants IAM access to the same entries, where any other `*` or `?` would be a
 * wider wildcard: so a `*` is allowed at the end only.
 */
export function allowedSecretArnProblems(entries: readonly string[]): string[] {
  return entries
    .filter((entry) => !ALLOWED_SECRET_ARN_ENTRY.test(entry))
    .map((entry) => `"${entry}" must be a Secrets Manager secret ARN, or an ARN prefix ending in "*"`);
}

import { ValidationError } from './errors';

/** The secret name inside a Secrets Manager ARN (`...:secret:<name>-<6 random characters>`). */
function secretNameOf(arn: string): string {
  const name = arn.slice(arn.indexOf(':secret:') + ':secret:'.length);
  return name.replace(/-[A-Za-z0-9]{6}$/, '');
}

/**
 * Which existing secrets an administrator may point a service at (`config.client_secret_arn`): those under the
 * broker's own name prefix, and those the operator lists explicitly. Anything else would let an administrator
 * make the broker read (and send to Entra) a secret it was never meant to touch.
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

  /** Throws a ValidationError unless the ARN may be used as a service's secret. */
  assertAllowed(arn: string): void {
    if (secretNameOf(arn).startsWith(this.prefix)) return;
    const listed = this.allowed.some((a) => (a.endsWith('*') ? arn.startsWith(a.slice(0, -1)) : a === arn));
    if (listed) return;
    throw new ValidationError(
      `config.client_secret_arn: the secret must be named under "${this.prefix}" or be listed in TOKEN_BROKER_ALLOWED_SECRET_ARNS`,
      { context: { field: 'config.client_secret_arn' } },
    );
  }
}

/**
 * The request side shared by the local AWS JSON servers (KMS, Secrets Manager): reading the members of a request
 * body with the types and constraints of the service model, in the words AWS uses for a violation, and refusing
 * the members a local server does not implement, so that nothing a caller sends is silently ignored.
 */
import { AwsJsonError, type AwsJsonOperation, type JsonObject } from './aws-json-server';

const BASE64_PATTERN = /^[A-Za-z0-9+/]*={0,2}$/;

/** Coral's wording for a request that breaks a constraint of the service model (member names in camelCase). */
export function modelValidationError(member: string, constraint: string, valueIsNull = false): AwsJsonError {
  const memberPath = member.charAt(0).toLowerCase() + member.slice(1);
  const value = valueIsNull ? 'Value null' : 'Value';
  return new AwsJsonError(
    'ValidationException',
    `1 validation error detected: ${value} at '${memberPath}' failed to satisfy constraint: ${constraint}`,
  );
}

/** Length limits of a string, list or blob member. */
export interface Limits {
  min?: number;
  max: number;
}

/** Reads the members of one request body (or of one structure inside it), enforcing the service model. */
export class RequestMembers {
  constructor(private readonly body: JsonObject) {}

  /** A JSON null counts as absent, as on AWS. */
  private raw(member: string): unknown {
    const value = this.body[member];
    return value === null ? undefined : value;
  }

  private typeError(member: string, expected: string): AwsJsonError {
    return new AwsJsonError('SerializationException', `Expected ${member} to be ${expected}`);
  }

  private checkLength(member: string, length: number, { min = 0, max }: Limits): void {
    if (length < min) {
      throw modelValidationError(member, `Member must have length greater than or equal to ${min}`);
    }
    if (length > max) {
      throw modelValidationError(member, `Member must have length less than or equal to ${max}`);
    }
  }

  /** The members present (not null) in the body. */
  present(): string[] {
    return Object.keys(this.body).filter((member) => this.raw(member) !== undefined);
  }

  optionalString(member: string, limits: Limits): string | undefined {
    const value = this.raw(member);
    if (value === undefined) return undefined;
    if (typeof value !== 'string') throw this.typeError(member, 'a string');
    this.checkLength(member, value.length, limits);
    return value;
  }

  requiredString(member: string, limits: Limits): string {
    const value = this.optionalString(member, { min: 1, ...limits });
    if (value === undefined) throw modelValidationError(member, 'Member must not be null', true);
    return value;
  }

  optionalEnum<T extends string>(member: string, allowed: readonly T[]): T | undefined {
    const value = this.optionalString(member, { max: 256 });
    if (value !== undefined && !(allowed as readonly string[]).includes(value)) {
      throw modelValidationError(member, `Member must satisfy enum value set: [${allowed.join(', ')}]`);
    }
    return value as T | undefined;
  }

  optionalInteger(member: string, range?: { min: number; max: number }): number | undefined {
    const value = this.raw(member);
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value)) throw this.typeError(member, 'an integer');
    if (range && value < range.min) {
      throw modelValidationError(member, `Member must have value greater than or equal to ${range.min}`);
    }
    if (range && value > range.max) {
      throw modelValidationError(member, `Member must have value less than or equal to ${range.max}`);
    }
    return value;
  }

  optionalBoolean(member: string): boolean | undefined {
    const value = this.raw(member);
    if (value === undefined) return undefined;
    if (typeof value !== 'boolean') throw this.typeError(member, 'a boolean');
    return value;
  }

  /** A blob arrives as a base64 string; the error never quotes it (it may be a plaintext or a secret). */
  requiredBlob(member: string, limits: Limits): Buffer {
    const value = this.raw(member);
    if (value === undefined) throw modelValidationError(member, 'Member must not be null', true);
    if (typeof value !== 'string' || !BASE64_PATTERN.test(value) || value.length % 4 !== 0) {
      throw this.typeError(member, 'a base64-encoded blob');
    }
    const bytes = Buffer.from(value, 'base64');
    this.checkLength(member, bytes.length, limits);
    return bytes;
  }

  /** A map of strings (for example KMS's EncryptionContext); absent is an empty map. */
  stringMap(member: string): Record<string, string> {
    const value = this.raw(member);
    if (value === undefined) return {};
    if (
      typeof value !== 'object' ||
      Array.isArray(value) ||
      Object.values(value as object).some((entry) => typeof entry !== 'string')
    ) {
      throw this.typeError(member, 'a map of strings');
    }
    return value as Record<string, string>;
  }

  /** A list of structures, each read with its own RequestMembers. */
  optionalStructureList(member: string, maxItems: number): RequestMembers[] | undefined {
    const value = this.raw(member);
    if (value === undefined) return undefined;
    if (!Array.isArray(value)) throw this.typeError(member, 'a list');
    this.checkLength(member, value.length, { max: maxItems });
    return value.map((item) => {
      if (typeof item !== 'object' || item === null || Array.isArray(item)) {
        throw this.typeError(`${member} entries`, 'structures');
      }
      return new RequestMembers(item as JsonObject);
    });
  }
}

/** An operation's implementation: the request's members in, the response body out. */
export type ModeledOperation = (members: RequestMembers) => Promise<JsonObject>;

/**
 * Declares a local server's operations: each names the members it implements, and any other member in a request
 * is refused with `unsupportedErrorType`, naming the member (never its value). A local server that ignored, say,
 * KMS's `DryRun` or Secrets Manager's `VersionStage` would answer something AWS would not.
 */
export function operationsRefusing(
  unsupportedErrorType: string,
): (members: readonly string[], run: ModeledOperation) => AwsJsonOperation {
  return (members, run) => async (body) => {
    const request = new RequestMembers(body);
    const unsupported = request.present().filter((member) => !members.includes(member));
    if (unsupported.length > 0) {
      const verb = unsupported.length === 1 ? 'is' : 'are';
      throw new AwsJsonError(
        unsupportedErrorType,
        `${unsupported.join(', ')} ${verb} not supported by this local server.`,
      );
    }
    return run(request);
  };
}

/**
 * The principals of local mode's IAM checks (`TOKEN_BROKER_LOCAL_IAM=<file>`): who may sign requests, with which
 * keys, and which execute-api:Invoke resources each may call. The file stands in for IAM users and roles and their
 * identity policies; nothing in it is sent anywhere.
 */
import { readFileSync } from 'node:fs';
import * as z from 'zod';
import { type ExecuteApiRoute, routeMatches } from '../lib/execute-api-grants';

/** API id and stage of local mode's execute-api ARNs (the same values its proxy events carry). */
export const LOCAL_API_ID = 'local';
export const LOCAL_STAGE = 'local';

const PrincipalSchema = z
  .object({
    access_key_id: z.string().regex(/^[A-Z0-9]{4,128}$/, 'must be upper-case letters and digits'),
    secret_access_key: z.string().min(1, 'must not be empty'),
    session_token: z.string().min(1, 'must not be empty').optional(),
    arn: z
      .string()
      .regex(
        /^arn:aws[a-z-]*:(iam|sts)::\d{12}:[A-Za-z0-9+=,.@_/:-]+$/,
        'must be an IAM or STS principal ARN (arn:aws:sts::123456789012:assumed-role/role/session)',
      ),
    /** requestContext.identity.caller; API Gateway puts the principal's unique id there (`AROA…:session`). */
    caller: z.string().min(1).optional(),
    allow: z.array(
      z
        .string()
        .regex(/^[^\s]+$/, 'must be a method and path such as GET/api/v2/azure_ad_api/client_credentials'),
    ),
  })
  .strict();

const PolicyFileSchema = z
  .object({
    region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must be an AWS region such as us-east-1'),
    account: z.string().regex(/^\d{12}$/, 'must be a 12-digit account id'),
    principals: z.array(PrincipalSchema),
  })
  .strict()
  .superRefine((file, ctx) => {
    const seen = new Set<string>();
    file.principals.forEach((p, i) => {
      if (seen.has(p.access_key_id))
        ctx.addIssue({
          code: 'custom',
          path: ['principals', i, 'access_key_id'],
          message: 'is listed twice',
        });
      seen.add(p.access_key_id);
    });
  });

export type LocalIamFile = z.infer<typeof PolicyFileSchema>;

/** One principal of the file, with its allow patterns compiled. */
export interface LocalPrincipal {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
  readonly arn: string;
  /** What API Gateway reports as `identity.caller` (and `identity.user`). */
  readonly caller: string;
  /** The principal's own account (from its ARN), `identity.accountId`. */
  readonly accountId: string;
  /** The routes the principal may invoke, from its `allow` entries. */
  readonly allow: readonly ExecuteApiRoute[];
}

/** Problems with the local IAM file; the message names the file and field, never a value from it. */
export class LocalIamFileError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'LocalIamFileError';
  }
}

/**
 * An `allow` entry as the route it grants: `GET/api/v2/x/client_credentials` is method `GET` and path
 * `/api/v2/x/client_credentials`; `*` alone any method on any path. Joined again, the parts are the entry itself.
 */
export function grantedRoute(tail: string): ExecuteApiRoute {
  const slash = tail.indexOf('/');
  return slash < 0 ? { method: tail, path: '' } : { method: tail.slice(0, slash), path: tail.slice(slash) };
}

/**
 * What API Gateway's `identity.caller` holds for a principal: its unique id. A file cannot know the real id
 * (`AROA…`), so unless it sets `caller`, the role name stands in for it (`role:session`), or the user name.
 */
function defaultCaller(arn: string): string {
  const resource = arn.split(':').slice(5).join(':');
  const assumed = /^assumed-role\/([^/]+)\/(.+)$/.exec(resource);
  if (assumed) return `${assumed[1]}:${assumed[2]}`;
  return resource.split('/').pop() ?? resource;
}

/** The principals and the API's region and account, as read from the local IAM file. */
export class LocalIamPolicy {
  private readonly byKey: ReadonlyMap<string, LocalPrincipal>;

  constructor(
    readonly region: string,
    /** The account that owns the API (the `execute-api` ARNs' account). */
    readonly account: string,
    principals: readonly LocalPrincipal[],
  ) {
    this.byKey = new Map(principals.map((p) => [p.accessKeyId, p]));
  }

  /** Builds the policy from the file's parsed JSON; throws a {@link LocalIamFileError} naming each problem. */
  static fromJson(json: unknown, source = 'local IAM file'): LocalIamPolicy {
    const parsed = PolicyFileSchema.safeParse(json);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(file)'}: ${i.message}`);
      throw new LocalIamFileError(`${source}: ${problems.join('; ')}`);
    }
    const file = parsed.data;
    return new LocalIamPolicy(
      file.region,
      file.account,
      file.principals.map((p) => ({
        accessKeyId: p.access_key_id,
        secretAccessKey: p.secret_access_key,
        sessionToken: p.session_token,
        arn: p.arn,
        caller: p.caller ?? defaultCaller(p.arn),
        accountId: p.arn.split(':')[4] as string,
        allow: p.allow.map(grantedRoute),
      })),
    );
  }

  /** Reads and checks the file at `path`. */
  static load(path: string): LocalIamPolicy {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw new LocalIamFileError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`, {
        cause: error,
      });
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new LocalIamFileError(`${path} is not valid JSON: ${(error as Error).message}`, { cause: error });
    }
    return LocalIamPolicy.fromJson(json, path);
  }

  /** How many principals the file lists. */
  get size(): number {
    return this.byKey.size;
  }

  /** The principal that owns an access key id, if any. */
  principal(accessKeyId: string): LocalPrincipal | undefined {
    return this.byKey.get(accessKeyId);
  }

  /** The execute-api ARN of a request, as API Gateway names it in IAM's decision and in its refusal. */
  resourceArn(method: string, path: string): string {
    return `arn:aws:execute-api:${this.region}:${this.account}:${LOCAL_API_ID}/${LOCAL_STAGE}/${method}${path}`;
  }

  /**
   * Whether one of the principal's `allow` entries matches the request, as IAM matches the tail of an execute-api
   * ARN (`GET/api/v2/x/client_credentials`, `*\/api/v2/system/*`): the construct's grants and this check share
   * lib/execute-api-grants.ts.
   */
  allows(principal: LocalPrincipal, method: string, path: string): boolean {
    return principal.allow.some((route) => routeMatches(route, method, path));
  }
}

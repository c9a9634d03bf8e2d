/**
 * Local mode's stand-in for API Gateway's IAM authorization (`AWS_IAM` on every method): a request must carry a
 * SigV4 signature for `execute-api` in the API's region, made with a key of the local IAM file, no more than
 * 15 minutes off, and the key's principal must be allowed `execute-api:Invoke` on the request's ARN. Refusals are
 * API Gateway's: status 403, its message and its `x-amzn-ErrorType`.
 *
 * The signature is recomputed with the AWS SDK's own signer (`@smithy/signature-v4`) over exactly the headers the
 * caller signed, and compared in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { Sha256 } from '@aws-crypto/sha256-js';
import { getCanonicalHeaders, SignatureV4 } from '@smithy/signature-v4';
import type { HeaderBag, HttpRequest } from '@smithy/types';
import type { APIGatewayProxyResult } from 'aws-lambda';
import type { LocalIamPolicy, LocalPrincipal } from './iam-policy';

const SERVICE = 'execute-api';
const ALGORITHM = 'AWS4-HMAC-SHA256';
const MAX_SKEW_MS = 15 * 60 * 1000;
/** Headers the SDK's signer adds itself; they are left out again unless the caller signed them. */
const SIGNER_ADDED_HEADERS = ['x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256'];

/** The request as the local server received it. */
export interface SignedRequest {
  method: string;
  /** Path as sent (still percent-encoded), e.g. `/api/v2/azure_ad_api/client_credentials`. */
  path: string;
  /** Query parameters, decoded. */
  query: Record<string, string[]>;
  /** Node's lower-cased request headers. */
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** requestContext.identity as API Gateway fills it after IAM authorization. */
export interface AuthorizedIdentity {
  caller: string;
  userArn: string;
  accountId: string;
  accessKey: string;
}

/** API Gateway's refusal: always 403, with its message and error type. */
export interface Refusal {
  statusCode: 403;
  /** Value of the `x-amzn-ErrorType` header. */
  errorType:
    | 'MissingAuthenticationTokenException'
    | 'IncompleteSignatureException'
    | 'InvalidSignatureException'
    | 'UnrecognizedClientException'
    | 'AccessDeniedException';
  message: string;
}

export type Decision = { allowed: true; identity: AuthorizedIdentity } | { allowed: false; refusal: Refusal };

const refuse = (errorType: Refusal['errorType'], message: string): Decision => ({
  allowed: false,
  refusal: { statusCode: 403, errorType, message },
});

/** `20260101T120000Z` (X-Amz-Date's basic ISO 8601) as a Date, or undefined. */
function parseAmzDate(value: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!m) return undefined;
  const [y, mo, d, h, mi, s] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const date = new Date(Date.UTC(y, mo - 1, d, h, mi, s));
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function amzDate(date: Date): string {
  return date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');
}

function header(headers: SignedRequest['headers'], name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

/** The parts of an `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` header. */
function parseAuthorization(
  value: string,
): Decision | { credential: string; signedHeaders: string[]; signature: string } {
  const space = value.indexOf(' ');
  const algorithm = space < 0 ? value : value.slice(0, space);
  const params = new Map<string, string>();
  for (const part of (space < 0 ? '' : value.slice(space + 1)).split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) params.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const missing = ['Credential', 'Signature', 'SignedHeaders']
    .filter((name) => !params.get(name))
    .map((name) => `Authorization header requires '${name}' parameter.`);
  if (algorithm !== ALGORITHM || missing.length > 0) {
    return refuse(
      'IncompleteSignatureException',
      algorithm !== ALGORITHM
        ? `Authorization header requires the ${ALGORITHM} algorithm (Signature Version 4). ${missing.join(' ')}`.trim()
        : missing.join(' '),
    );
  }
  return {
    credential: params.get('Credential') as string,
    signedHeaders: (params.get('SignedHeaders') as string).split(';'),
    signature: params.get('Signature') as string,
  };
}

/** A signer that also exposes the canonical request and string to sign, for API Gateway's mismatch message. */
class VerifyingSigner extends SignatureV4 {
  async explain(
    request: HttpRequest,
    headers: { signed: Set<string>; unsignable: Set<string> },
    payloadHash: string,
    longDate: string,
    scope: string,
  ) {
    const canonicalHeaders = getCanonicalHeaders(request, headers.unsignable, headers.signed) as HeaderBag;
    const canonical = this.createCanonicalRequest(request, canonicalHeaders, payloadHash);
    return { canonical, stringToSign: await this.createStringToSign(longDate, scope, canonical, ALGORITHM) };
  }
}

/**
 * Decides one request as API Gateway's IAM authorization would. `now` is the server's clock (injected for tests).
 */
export async function authorizeRequest(
  policy: LocalIamPolicy,
  request: SignedRequest,
  now: Date = new Date(),
): Promise<Decision> {
  const authorization = header(request.headers, 'authorization');
  if (authorization === undefined || authorization.trim() === '') {
    return refuse('MissingAuthenticationTokenException', 'Missing Authentication Token');
  }
  const parsed = parseAuthorization(authorization.trim());
  if ('allowed' in parsed) return parsed;

  const amzDateValue = header(request.headers, 'x-amz-date');
  if (amzDateValue === undefined) {
    return refuse(
      'IncompleteSignatureException',
      "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    );
  }
  const signingDate = parseAmzDate(amzDateValue);
  if (!signingDate) {
    return refuse(
      'IncompleteSignatureException',
      `X-Amz-Date must be in the ISO8601 Long Format: '${amzDateValue}'`,
    );
  }

  const [accessKeyId, shortDate, region, service, terminator, ...rest] = parsed.credential.split('/');
  if (!accessKeyId || !shortDate || !region || !service || !terminator || rest.length > 0) {
    return refuse(
      'IncompleteSignatureException',
      `Credential should be of the form <access key id>/<date>/<region>/${SERVICE}/aws4_request.`,
    );
  }
  if (terminator !== 'aws4_request') {
    return refuse(
      'InvalidSignatureException',
      `Credential should be scoped with a valid terminator: 'aws4_request', not '${terminator}'.`,
    );
  }
  if (service !== SERVICE) {
    return refuse(
      'InvalidSignatureException',
      `Credential should be scoped to correct service: '${SERVICE}'.`,
    );
  }
  if (region !== policy.region) {
    return refuse('InvalidSignatureException', 'Credential should be scoped to a valid region.');
  }
  if (shortDate !== amzDateValue.slice(0, 8)) {
    return refuse(
      'InvalidSignatureException',
      `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${shortDate}' != '${amzDateValue.slice(0, 8)}', from 'X-Amz-Date'.`,
    );
  }

  const principal = policy.principal(accessKeyId);
  const presentedToken = header(request.headers, 'x-amz-security-token');
  if (!principal || !sameSessionToken(principal, presentedToken)) {
    return refuse('UnrecognizedClientException', 'The security token included in the request is invalid.');
  }

  const skew = signingDate.getTime() - now.getTime();
  if (skew < -MAX_SKEW_MS) {
    return refuse(
      'InvalidSignatureException',
      `Signature expired: ${amzDateValue} is now earlier than ${amzDate(new Date(now.getTime() - MAX_SKEW_MS))} (${amzDate(now)} - 15 min.)`,
    );
  }
  if (skew > MAX_SKEW_MS) {
    return refuse(
      'InvalidSignatureException',
      `Signature not yet current: ${amzDateValue} is still later than ${amzDate(new Date(now.getTime() + MAX_SKEW_MS))} (${amzDate(now)} + 15 min.)`,
    );
  }

  const mismatch = await verifySignature(principal, request, parsed, signingDate, amzDateValue);
  if (mismatch !== undefined) return refuse('InvalidSignatureException', mismatch);

  if (!policy.allows(principal, request.method, request.path)) {
    return refuse(
      'AccessDeniedException',
      `User: ${principal.arn} is not authorized to perform: execute-api:Invoke on resource: ${policy.resourceArn(request.method, request.path)}`,
    );
  }
  return {
    allowed: true,
    identity: {
      caller: principal.caller,
      userArn: principal.arn,
      accountId: principal.accountId,
      accessKey: principal.accessKeyId,
    },
  };
}

/** A principal with a session token needs exactly that token; one without needs none. */
function sameSessionToken(principal: LocalPrincipal, presented: string | undefined): boolean {
  if (principal.sessionToken === undefined) return presented === undefined;
  if (presented === undefined) return false;
  const a = Buffer.from(principal.sessionToken);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Recomputes the signature over the headers the caller listed and returns API Gateway's mismatch message, or
 * undefined when the signatures are equal.
 */
async function verifySignature(
  principal: LocalPrincipal,
  request: SignedRequest,
  auth: { credential: string; signedHeaders: string[]; signature: string },
  signingDate: Date,
  longDate: string,
): Promise<string | undefined> {
  const signed = new Set(auth.signedHeaders.map((h) => h.toLowerCase()));
  const headers: HeaderBag = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(',') : value;
  }
  // The body's real hash: a caller's x-amz-content-sha256 header is signed, but must also be true.
  const payloadHash = createHash('sha256').update(request.body).digest('hex');
  const claimedHash = headers['x-amz-content-sha256'];
  const unsignable = new Set(
    [...Object.keys(headers), ...SIGNER_ADDED_HEADERS].filter((h) => !signed.has(h)),
  );
  const httpRequest: HttpRequest = {
    method: request.method,
    protocol: 'http:',
    hostname: headers.host ?? 'localhost',
    path: request.path,
    query: request.query,
    headers,
    body: request.body.length > 0 ? request.body : undefined,
  };
  const signer = new VerifyingSigner({
    service: SERVICE,
    region: auth.credential.split('/')[2] as string,
    credentials: {
      accessKeyId: principal.accessKeyId,
      secretAccessKey: principal.secretAccessKey,
      sessionToken: principal.sessionToken,
    },
    sha256: Sha256,
    applyChecksum: false,
  });
  const expected = await signer.sign(httpRequest, {
    signingDate,
    unsignableHeaders: unsignable,
    signableHeaders: signed,
  });
  const expectedAuth = String(expected.headers.authorization ?? '');
  const expectedSignature = /Signature=([0-9a-f]+)/.exec(expectedAuth)?.[1] ?? '';
  const a = Buffer.from(expectedSignature);
  const b = Buffer.from(auth.signature);
  const equal =
    a.length === b.length &&
    timingSafeEqual(a, b) &&
    (claimedHash === undefined || claimedHash === payloadHash);
  if (equal) return undefined;

  const scope = auth.credential.split('/').slice(1).join('/');
  const { canonical, stringToSign } = await signer.explain(
    { ...httpRequest, headers: { ...headers, 'x-amz-date': longDate } },
    { signed, unsignable },
    payloadHash,
    longDate,
    scope,
  );
  return (
    'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access ' +
    'Key and signing method. Consult the service documentation for details.\n\n' +
    `The Canonical String for this request should have been\n'${canonical}'\n\n` +
    `The String-to-Sign should have been\n'${stringToSign}'\n`
  );
}

/** API Gateway's answer to a refused request: 403 with `{"message": …}` and the error type header. */
export function refusalResponse(refusal: Refusal, requestId: string): APIGatewayProxyResult {
  return {
    statusCode: refusal.statusCode,
    headers: {
      'Content-Type': 'application/json',
      'x-amzn-ErrorType': refusal.errorType,
      'x-amzn-RequestId': requestId,
    },
    body: JSON.stringify({ message: refusal.message }),
  };
}

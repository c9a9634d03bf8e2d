/**
 * A local AWS STS that implements `GetWebIdentityToken` (IAM outbound identity federation) over the service's real
 * wire protocol (AWS Query: a form-encoded POST, an XML answer), so local mode and the tests run the broker's
 * `federated` credential through the real @aws-sdk/client-sts client unchanged.
 *
 * It is also the token issuer: `iss` is this server's own http URL on 127.0.0.1, which serves
 * `/.well-known/openid-configuration` and its JWKS, so a relying party (the Entra emulator) verifies the tokens
 * through OIDC discovery exactly as Entra verifies AWS's. Tokens are RS256-signed with a local RSA key, persisted
 * under `${dataDir}/sts/` when a dataDir is given (so restarts keep the same key), and carry the claims AWS
 * documents: iss, sub (the caller's role ARN), aud, iat, nbf, exp, jti and the `https://sts.amazonaws.com/` object
 * (aws_account, source_region, request_tags).
 *
 * Local use only: requests are not authenticated (SigV4 signatures are not verified), and the caller is always
 * the configured role. Tokens never appear in logs.
 */
import { randomUUID } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import path from 'node:path';
import { exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import { closeNow, type ListenOptions, listenLocally } from './loopback-http';

/** The role local mode presents as when `TOKEN_BROKER_LOCAL_ROLE_ARN` is not set. */
export const DEFAULT_LOCAL_ROLE_ARN = 'arn:aws:iam::000000000000:role/token-broker-local';

export interface StsServerOptions extends ListenOptions {
  /** ARN of the role the caller is taken to be (the token's `sub`). */
  roleArn?: string;
  /** Directory under which the signing key is kept (`sts/`); without one the key lives in memory only. */
  dataDir?: string;
  /** Region named in the tokens; us-east-1 by default. */
  region?: string;
  /** Clock in epoch milliseconds, for iat/exp; Date.now by default. */
  now?: () => number;
  /** Answer every GetWebIdentityToken as AWS does before `aws iam enable-outbound-web-identity-federation`. */
  federationDisabled?: boolean;
}

export interface RunningStsServer {
  /** Base URL to give the SDK as `endpoint` (or AWS_ENDPOINT_URL_STS). */
  url: string;
  /** The tokens' `iss`: where `/.well-known/openid-configuration` is served. Equal to {@link url}. */
  issuer: string;
  /** The role ARN the tokens name as `sub`. */
  roleArn: string;
  /** How many tokens were issued (for tests that check a token was reused or fetched). */
  readonly issuedCount: number;
  close(): Promise<void>;
}

const XMLNS = 'https://sts.amazonaws.com/doc/2011-06-15/';
const MAX_REQUEST_BYTES = 64 * 1024;
const DEFAULT_DURATION_SECONDS = 300;

class StsError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly statusCode = 400,
  ) {
    super(message);
  }
}

const validation = (message: string) => new StsError('ValidationError', message);

function xmlEscape(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

function sendXml(response: ServerResponse, statusCode: number, body: string): void {
  response.writeHead(statusCode, {
    'Content-Type': 'text/xml',
    'Content-Length': Buffer.byteLength(body),
    'x-amzn-RequestId': randomUUID(),
  });
  response.end(body);
}

function sendJson(response: ServerResponse, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  response.end(text);
}

function sendError(response: ServerResponse, error: StsError): void {
  sendXml(
    response,
    error.statusCode,
    `<ErrorResponse xmlns="${XMLNS}"><Error><Type>Sender</Type><Code>${error.code}</Code><Message>${xmlEscape(error.message)}</Message></Error><RequestId>${randomUUID()}</RequestId></ErrorResponse>`,
  );
}

async function readForm(request: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > MAX_REQUEST_BYTES) throw validation('Request body is too large.');
    chunks.push(chunk as Buffer);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/** AWS Query lists: `Audience.member.1`, `Audience.member.2`, ... */
function members(form: URLSearchParams, name: string): string[] {
  const values: string[] = [];
  for (let i = 1; form.has(`${name}.member.${i}`); i++)
    values.push(form.get(`${name}.member.${i}`) as string);
  return values;
}

type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

interface SigningKey {
  privateKey: PrivateKey;
  publicJwk: JWK;
}

/** The RS256 key, from `${dataDir}/sts/signing-key.json` or created (and written there) on first use. */
async function loadSigningKey(dataDir: string | undefined): Promise<SigningKey> {
  const file = dataDir ? path.join(dataDir, 'sts', 'signing-key.json') : undefined;
  if (file) {
    try {
      const jwk = JSON.parse(await readFile(file, 'utf8')) as JWK;
      const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicJwk } = jwk;
      return { privateKey: (await importJWK(jwk, 'RS256')) as PrivateKey, publicJwk };
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'ENOENT') throw new Error(`${file} is not a usable key`);
    }
  }
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = randomUUID();
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  if (file) {
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    await chmod(path.dirname(file), 0o700);
    const temp = `${file}.${randomUUID()}.tmp`;
    const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
    await writeFile(temp, JSON.stringify(privateJwk), { mode: 0o600, flag: 'wx' });
    await rename(temp, file);
  }
  return { privateKey, publicJwk };
}

/** Starts the local STS and OIDC issuer. */
export async function startStsServer(options: StsServerOptions = {}): Promise<RunningStsServer> {
  const roleArn = options.roleArn ?? DEFAULT_LOCAL_ROLE_ARN;
  const account = /^arn:aws[a-z-]*:iam::(\d{12}):/.exec(roleArn)?.[1] ?? '000000000000';
  const region = options.region ?? 'us-east-1';
  const now = options.now ?? Date.now;
  const key = await loadSigningKey(options.dataDir);
  let issuer = '';
  let issuedCount = 0;

  const getWebIdentityToken = async (form: URLSearchParams): Promise<string> => {
    const audiences = members(form, 'Audience');
    if (audiences.length < 1 || audiences.length > 10) {
      throw validation('Audience must name between 1 and 10 audiences.');
    }
    if (audiences.some((a) => a.length < 1 || a.length > 1000)) {
      throw validation('Each Audience must be between 1 and 1000 characters.');
    }
    const algorithm = form.get('SigningAlgorithm');
    if (algorithm === null) throw validation('SigningAlgorithm is required.');
    if (algorithm !== 'RS256') {
      throw validation(`SigningAlgorithm ${algorithm} is not supported by this local STS (use RS256).`);
    }
    const duration = Number(form.get('DurationSeconds') ?? DEFAULT_DURATION_SECONDS);
    if (!Number.isInteger(duration) || duration < 60 || duration > 3600) {
      throw validation('DurationSeconds must be an integer between 60 and 3600.');
    }
    if (options.federationDisabled) {
      throw new StsError(
        'OutboundWebIdentityFederationDisabledException',
        'Outbound web identity federation is not enabled for this account.',
        403,
      );
    }
    const tags: Record<string, string> = {};
    for (let i = 1; form.has(`Tags.member.${i}.Key`); i++) {
      tags[form.get(`Tags.member.${i}.Key`) as string] = form.get(`Tags.member.${i}.Value`) ?? '';
    }
    const issuedAt = Math.floor(now() / 1000);
    const token = await new SignJWT({
      'https://sts.amazonaws.com/': {
        aws_account: account,
        source_region: region,
        ...(Object.keys(tags).length > 0 ? { request_tags: tags } : {}),
      },
    })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: key.publicJwk.kid as string })
      .setIssuer(issuer)
      .setSubject(roleArn)
      .setAudience(audiences.length === 1 ? (audiences[0] as string) : audiences)
      .setIssuedAt(issuedAt)
      .setNotBefore(issuedAt)
      .setExpirationTime(issuedAt + duration)
      .setJti(randomUUID())
      .sign(key.privateKey);
    issuedCount++;
    return `<GetWebIdentityTokenResponse xmlns="${XMLNS}"><GetWebIdentityTokenResult><WebIdentityToken>${token}</WebIdentityToken><Expiration>${new Date((issuedAt + duration) * 1000).toISOString()}</Expiration></GetWebIdentityTokenResult><ResponseMetadata><RequestId>${randomUUID()}</RequestId></ResponseMetadata></GetWebIdentityTokenResponse>`;
  };

  const server = createServer((request, response) => {
    void (async () => {
      const url = new URL(request.url ?? '/', 'http://sts');
      try {
        if (request.method === 'GET' && url.pathname === '/.well-known/openid-configuration') {
          request.resume();
          return sendJson(response, {
            issuer,
            jwks_uri: `${issuer}/.well-known/jwks.json`,
            response_types_supported: ['id_token'],
            subject_types_supported: ['public'],
            id_token_signing_alg_values_supported: ['RS256'],
          });
        }
        if (request.method === 'GET' && url.pathname === '/.well-known/jwks.json') {
          request.resume();
          return sendJson(response, { keys: [key.publicJwk] });
        }
        if (request.method !== 'POST' || url.pathname !== '/') {
          request.resume();
          throw new StsError('InvalidAction', 'Unknown endpoint.', 404);
        }
        const form = await readForm(request);
        const action = form.get('Action');
        if (action !== 'GetWebIdentityToken') {
          throw new StsError(
            'InvalidAction',
            `Could not find operation ${action ?? '(none)'} for version 2011-06-15`,
          );
        }
        sendXml(response, 200, await getWebIdentityToken(form));
      } catch (error) {
        if (error instanceof StsError) return sendError(response, error);
        console.error(`sts-server: request failed: ${(error as { name?: unknown })?.name ?? typeof error}`);
        if (!response.headersSent)
          sendError(response, new StsError('InternalFailure', 'Internal error.', 500));
      }
    })();
  });

  issuer = await listenLocally(server, options);
  let closed: Promise<void> | undefined;

  return {
    url: issuer,
    issuer,
    roleArn,
    get issuedCount() {
      return issuedCount;
    },
    close: () => {
      // Idempotent: a test may stop a server early that its teardown stops again.
      closed ??= closeNow(server);
      return closed;
    },
  };
}

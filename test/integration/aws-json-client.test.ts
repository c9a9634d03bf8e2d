import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';
import { AWS_CALL_LIMITS } from '../../functions/aws-clients';
import { AwsJsonClient, DYNAMODB_SERVICE, KMS_SERVICE } from '../../functions/aws-json';

/**
 * The broker's own AWS JSON-protocol client (functions/aws-json.ts) against a loopback HTTP server that records what
 * arrives and answers as the test says: the faults here (5xx, throttling) are answers a real local DynamoDB does not
 * give on demand. Its use against DynamoDB Local, the local KMS and Secrets Manager servers and a black hole is
 * covered by every adapter test (e.g. hanging-adapters.test.ts).
 */

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  path: string;
}

let server: Server;
let url: string;
let received: Received[];
/** The answers still to give, in order; then `{}` with 200. */
let answers: Array<{ status: number; body: unknown; delayMs?: number }>;

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        path: req.url ?? '',
      });
      const answer = answers.shift() ?? { status: 200, body: {} };
      setTimeout(() => {
        if (res.destroyed) return;
        res.writeHead(answer.status, {
          'content-type': 'application/x-amz-json-1.0',
          'x-amzn-requestid': 'req-1',
        });
        res.end(JSON.stringify(answer.body));
      }, answer.delayMs ?? 0);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});
beforeEach(() => {
  received = [];
  answers = [];
});

const LAMBDA_ENV = {
  AWS_REGION: 'eu-west-1',
  AWS_ACCESS_KEY_ID: 'ASIAEXAMPLE',
  AWS_SECRET_ACCESS_KEY: 'example-secret-key',
  AWS_SESSION_TOKEN: 'example-session-token',
};

/** A client as the handlers build it, configured by `env` only (as in Lambda and local mode). */
function clientFrom(env: NodeJS.ProcessEnv, service = DYNAMODB_SERVICE): AwsJsonClient {
  return new AwsJsonClient({ service, limits: AWS_CALL_LIMITS.dynamodb, env });
}

describe('the AWS JSON client', () => {
  it('calls the endpoint of AWS_ENDPOINT_URL_DYNAMODB with the operation as X-Amz-Target and the input as JSON', async () => {
    const client = clientFrom({ ...LAMBDA_ENV, AWS_ENDPOINT_URL_DYNAMODB: url });
    answers.push({ status: 200, body: { Item: { pk: { S: 'a' } } } });

    const out = await client.call('GetItem', { TableName: 't', Key: { pk: { S: 'a' } } });
    client.destroy();

    expect(out).toEqual({ Item: { pk: { S: 'a' } } });
    expect(received[0]?.headers['x-amz-target']).toBe('DynamoDB_20120810.GetItem');
    expect(received[0]?.headers['content-type']).toBe('application/x-amz-json-1.0');
    expect(JSON.parse(received[0]?.body ?? '')).toEqual({ TableName: 't', Key: { pk: { S: 'a' } } });
  });

  it('signs with the environment’s credentials and session token, as the AWS SDK’s own signer does', async () => {
    const client = clientFrom({ ...LAMBDA_ENV, AWS_ENDPOINT_URL_KMS: url }, KMS_SERVICE);

    await client.call('Decrypt', { CiphertextBlob: 'AAAA' });
    client.destroy();

    const { headers, body, path } = received[0] as Received;
    expect(headers['x-amz-security-token']).toBe('example-session-token');
    expect(headers.authorization).toMatch(
      /^AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE\/\d{8}\/eu-west-1\/kms\/aws4_request, /,
    );
    // The SDK's SigV4 signer, given the same request and time, computes the same signature.
    const date = String(headers['x-amz-date']);
    const signingDate = new Date(
      `${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6, 8)}T${date.slice(9, 11)}:${date.slice(11, 13)}:${date.slice(13, 15)}Z`,
    );
    const signer = new SignatureV4({
      service: 'kms',
      region: 'eu-west-1',
      sha256: Sha256,
      // The JSON protocol signs no payload-hash header (that is S3's).
      applyChecksum: false,
      credentials: {
        accessKeyId: LAMBDA_ENV.AWS_ACCESS_KEY_ID,
        secretAccessKey: LAMBDA_ENV.AWS_SECRET_ACCESS_KEY,
        sessionToken: LAMBDA_ENV.AWS_SESSION_TOKEN,
      },
    });
    const signedHeaders = /SignedHeaders=([^,]+)/.exec(String(headers.authorization))?.[1]?.split(';') ?? [];
    const expected = await signer.sign(
      {
        method: 'POST',
        protocol: 'http:',
        hostname: '127.0.0.1',
        port: Number(new URL(url).port),
        path,
        headers: Object.fromEntries(
          signedHeaders.filter((h) => h !== 'x-amz-date').map((h) => [h, String(headers[h])]),
        ),
        body,
      },
      { signingDate },
    );
    const expectedSignature = /Signature=([0-9a-f]+)/.exec(String(expected.headers.authorization))?.[1];
    expect(String(headers.authorization)).toContain(`Signature=${expectedSignature}`);
  });

  it('fails with an error named by the service’s error type, carrying the error body’s fields', async () => {
    const client = clientFrom({ ...LAMBDA_ENV, AWS_ENDPOINT_URL_DYNAMODB: url });
    answers.push({
      status: 400,
      body: {
        __type: 'com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException',
        message: 'The conditional request failed',
        Item: { pk: { S: 'a' } },
      },
    });

    const error = await client.call('PutItem', {}).catch((e: unknown) => e);
    client.destroy();

    expect(error).toMatchObject({
      name: 'ConditionalCheckFailedException',
      message: 'The conditional request failed',
      Item: { pk: { S: 'a' } },
      $fault: 'client',
      $metadata: { httpStatusCode: 400, requestId: 'req-1' },
    });
    expect(received).toHaveLength(1);
  });

  it('tries a 5xx or a throttled call once more (maxAttempts 2), and stops there', async () => {
    const client = clientFrom({ ...LAMBDA_ENV, AWS_ENDPOINT_URL_DYNAMODB: url });
    answers.push(
      { status: 400, body: { __type: 'ProvisionedThroughputExceededException', message: 'slow down' } },
      { status: 200, body: { Items: [] } },
    );
    await expect(client.call('Query', {})).resolves.toEqual({ Items: [] });

    answers.push(
      { status: 500, body: { __type: 'InternalServerError' } },
      { status: 500, body: { __type: 'InternalServerError' } },
      { status: 200, body: {} },
    );
    const error = await client.call('Query', {}).catch((e: unknown) => e);
    client.destroy();

    expect(error).toMatchObject({ name: 'InternalServerError', $fault: 'server' });
    expect(received).toHaveLength(4);
  });

  describe('an operation that is not idempotent (KMS CreateKey)', () => {
    // Short limits: an answer 300 ms late is a timed-out attempt for an idempotent call.
    const limits = { connectionTimeoutMs: 1000, requestTimeoutMs: 200, socketTimeoutMs: 200, maxAttempts: 2 };
    const kms = () =>
      new AwsJsonClient({ service: KMS_SERVICE, limits, env: { ...LAMBDA_ENV, AWS_ENDPOINT_URL_KMS: url } });

    it('is sent once and waits for a late answer as long as all attempts of another call would', async () => {
      const client = kms();
      answers.push({ status: 200, body: { KeyMetadata: { KeyId: 'k1' } }, delayMs: 300 });

      const out = await client.call('CreateKey', {}, { idempotent: false });
      client.destroy();

      expect(out).toEqual({ KeyMetadata: { KeyId: 'k1' } });
      expect(received).toHaveLength(1);
    });

    it('is not tried again after a 5xx or a timeout (it may have created the key), only when throttled', async () => {
      const client = kms();
      answers.push({ status: 500, body: { __type: 'KMSInternalException' } });
      const failed = await client.call('CreateKey', {}, { idempotent: false }).catch((e: unknown) => e);
      answers.push({ status: 200, body: {}, delayMs: 1000 });
      const timedOut = await client.call('CreateKey', {}, { idempotent: false }).catch((e: unknown) => e);
      answers.push(
        { status: 400, body: { __type: 'ThrottlingException', message: 'slow down' } },
        { status: 200, body: { KeyMetadata: { KeyId: 'k2' } } },
      );
      const throttled = await client.call('CreateKey', {}, { idempotent: false });
      client.destroy();

      expect(failed).toMatchObject({ name: 'KMSInternalException' });
      expect(timedOut).toMatchObject({ name: 'TimeoutError' });
      expect(throttled).toEqual({ KeyMetadata: { KeyId: 'k2' } });
      expect(received).toHaveLength(4);
    });

    it('the same late answer makes an idempotent call try again', async () => {
      const client = kms();
      answers.push({ status: 200, body: {}, delayMs: 300 }, { status: 200, body: { KeyId: 'k' } });

      await expect(client.call('DescribeKey', {})).resolves.toEqual({ KeyId: 'k' });
      client.destroy();

      expect(received).toHaveLength(2);
    });
  });

  it('refuses to call without credentials, naming the missing variables', async () => {
    const client = clientFrom({ AWS_REGION: 'eu-west-1', AWS_ENDPOINT_URL_DYNAMODB: url });
    await expect(client.call('GetItem', {})).rejects.toThrow(/AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY/);
    client.destroy();
    expect(received).toHaveLength(0);
  });

  it('calls the regional AWS endpoint when no endpoint is configured', () => {
    // Not called (AWS is unreachable here): the endpoint is what the client would sign and connect to.
    const client = clientFrom(LAMBDA_ENV);
    expect(client.url.href).toBe('https://dynamodb.eu-west-1.amazonaws.com/');
    client.destroy();
  });
});

describe('the AWS JSON client, when the connection drops mid-answer', () => {
  let cutting: Server;
  let cuttingUrl: string;
  let requests: number;

  beforeAll(async () => {
    // The first answer announces 100 bytes, sends 10 and closes the connection; the next one is whole.
    cutting = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        requests++;
        if (requests === 1) {
          res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0', 'content-length': '100' });
          res.write('{"Item": {');
          setImmediate(() => res.socket?.destroy());
          return;
        }
        res.writeHead(200, { 'content-type': 'application/x-amz-json-1.0' });
        res.end(JSON.stringify({ Items: [] }));
      });
    });
    await new Promise<void>((resolve) => cutting.listen(0, '127.0.0.1', resolve));
    cuttingUrl = `http://127.0.0.1:${(cutting.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => cutting.close(resolve));
  });
  beforeEach(() => {
    requests = 0;
  });

  it('fails that attempt and tries again, without waiting for the body timeout', async () => {
    // A body timeout longer than the test's own: waiting for it would fail the test.
    const client = new AwsJsonClient({
      service: DYNAMODB_SERVICE,
      limits: { ...AWS_CALL_LIMITS.dynamodb, socketTimeoutMs: 600_000 },
      env: { ...LAMBDA_ENV, AWS_ENDPOINT_URL_DYNAMODB: cuttingUrl },
    });

    const out = await client.call('Query', {});
    client.destroy();

    expect(out).toEqual({ Items: [] });
    expect(requests).toBe(2);
  });
});

import {
  type BrokerError,
  ConflictError,
  GrantNotEnabledError,
  IdentityProviderError,
  IdentityProviderTimeoutError,
  IdentityProviderUnavailableError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  PreconditionFailedError,
  ServiceInactiveError,
  StoreError,
  UnsupportedMediaTypeError,
  ValidationError,
} from '../../lib/errors';
import { errorResponse, jsonResponse, SECURITY_HEADERS } from '../../lib/http';

const REQUEST_ID = 'c0ffee00-0000-4000-8000-000000000001';

const bodyOf = (result: { body: string }) => JSON.parse(result.body);

/** An error as middy's own middlewares throw it (`createError` from @middy/util). */
function middyHttpError(statusCode: number, message: string): Error {
  return Object.assign(new Error(message), { statusCode, expose: statusCode < 500 });
}

describe('errorResponse', () => {
  const named: Array<[string, number, BrokerError]> = [
    ['ValidationError', 400, new ValidationError('name: is a reserved name')],
    ['GrantNotEnabledError', 400, new GrantNotEnabledError('grant not enabled')],
    ['ServiceInactiveError', 403, new ServiceInactiveError('service "x" is not active')],
    ['NotFoundError', 404, new NotFoundError('service "x" does not exist')],
    ['MethodNotAllowedError', 405, new MethodNotAllowedError('method PUT is not allowed here', ['GET'])],
    ['ConflictError', 409, new ConflictError('a service named "x" already exists')],
    ['PreconditionFailedError', 412, new PreconditionFailedError('service "x" has changed')],
    ['PayloadTooLargeError', 413, new PayloadTooLargeError('request body is larger than 65536 bytes')],
    ['UnsupportedMediaTypeError', 415, new UnsupportedMediaTypeError('send application/json')],
    ['IdentityProviderError', 502, new IdentityProviderError('invalid_client: AADSTS7000215')],
    ['IdentityProviderUnavailableError', 503, new IdentityProviderUnavailableError('throttled')],
    ['IdentityProviderTimeoutError', 504, new IdentityProviderTimeoutError('no answer within 10000 ms')],
  ];

  it.each(named)('maps %s to HTTP %i', (_name, status, error) => {
    const result = errorResponse(error, REQUEST_ID);
    expect(result.statusCode).toBe(status);
  });

  it.each(named)('answers %s in the error shape with its message and code %i', (_name, status, error) => {
    const result = errorResponse(error, REQUEST_ID);
    expect(bodyOf(result)).toEqual({ error: { code: status, message: error.message } });
  });

  it('includes the context of a named error', () => {
    const error = new IdentityProviderError('invalid_scope: AADSTS70011: bad scope', {
      context: { upstream_status: 400, error: 'invalid_scope', error_codes: [70011] },
    });
    expect(bodyOf(errorResponse(error, REQUEST_ID)).error.context).toEqual({
      upstream_status: 400,
      error: 'invalid_scope',
      error_codes: [70011],
    });
  });

  it('drops undefined context values, and the context when nothing is left', () => {
    const error = new IdentityProviderError('x', { context: { trace_id: undefined } });
    expect(bodyOf(errorResponse(error, REQUEST_ID))).toEqual({ error: { code: 502, message: 'x' } });
  });

  it('never serializes the cause of a named error', () => {
    const error = new IdentityProviderError('upstream failed', { cause: new Error('raw upstream body') });
    expect(errorResponse(error, REQUEST_ID).body).not.toContain('raw upstream body');
  });

  it('passes on Retry-After from an unavailable identity provider', () => {
    const error = new IdentityProviderUnavailableError('throttled', { retryAfterSeconds: 17 });
    expect(errorResponse(error, REQUEST_ID).headers?.['Retry-After']).toBe('17');
  });

  it('passes on a Retry-After of 0', () => {
    const error = new IdentityProviderUnavailableError('throttled', { retryAfterSeconds: 0 });
    expect(errorResponse(error, REQUEST_ID).headers?.['Retry-After']).toBe('0');
  });

  it('sends no Retry-After when the identity provider sent none', () => {
    const error = new IdentityProviderUnavailableError('throttled');
    expect(errorResponse(error, REQUEST_ID).headers).not.toHaveProperty('Retry-After');
  });

  it('lists the allowed methods in Allow on a 405', () => {
    const error = new MethodNotAllowedError('method PUT is not allowed here', ['GET', 'POST', 'DELETE']);
    expect(errorResponse(error, REQUEST_ID).headers?.Allow).toBe('GET, POST, DELETE');
  });

  describe('errors that are not known to be safe', () => {
    it('turns an unknown error into a generic 500 naming the request id', () => {
      const result = errorResponse(new Error('connect ECONNREFUSED 10.0.0.7:443'), REQUEST_ID);
      expect(result.statusCode).toBe(500);
      expect(bodyOf(result)).toEqual({
        error: {
          code: 500,
          message: `internal error; quote request id ${REQUEST_ID} to the operator`,
          context: { request_id: REQUEST_ID },
        },
      });
    });

    it('never shows the message of an unknown error', () => {
      const result = errorResponse(new Error('connect ECONNREFUSED 10.0.0.7:443'), REQUEST_ID);
      expect(result.body).not.toContain('ECONNREFUSED');
    });

    it('turns a StoreError into the generic 500 without its message or cause', () => {
      const error = new StoreError('services table write failed', {
        cause: new Error('AccessDenied for role x'),
      });
      const result = errorResponse(error, REQUEST_ID);
      expect(result.statusCode).toBe(500);
      expect(result.body).not.toContain('services table');
      expect(result.body).not.toContain('AccessDenied');
    });

    it('turns a thrown non-error value into the generic 500', () => {
      const result = errorResponse('boom', REQUEST_ID);
      expect(result.statusCode).toBe(500);
      expect(result.body).not.toContain('boom');
    });

    it("keeps the status and message of middy's exposed 4xx errors", () => {
      const result = errorResponse(middyHttpError(415, 'Unsupported Media Type'), REQUEST_ID);
      expect(result.statusCode).toBe(415);
      expect(bodyOf(result)).toEqual({ error: { code: 415, message: 'Unsupported Media Type' } });
    });

    it("does not expose middy's 5xx errors", () => {
      const result = errorResponse(middyHttpError(503, 'pool exhausted at db-7'), REQUEST_ID);
      expect(result.statusCode).toBe(500);
      expect(result.body).not.toContain('db-7');
    });

    it('does not trust an error that claims expose for a 5xx status', () => {
      const error = Object.assign(new Error('internal detail'), { statusCode: 500, expose: true });
      const result = errorResponse(error, REQUEST_ID);
      expect(result.statusCode).toBe(500);
      expect(result.body).not.toContain('internal detail');
    });
  });

  describe('headers', () => {
    it.each([
      ['a named error', new NotFoundError('x')],
      ['an unknown error', new Error('x')],
      ['a middy error', middyHttpError(422, 'Invalid or malformed JSON was provided')],
    ])('puts the security headers on the response to %s', (_what, error) => {
      expect(errorResponse(error, REQUEST_ID).headers).toMatchObject({
        'Content-Type': 'application/json',
        'Cache-Control': 'no-store',
        Pragma: 'no-cache',
        'X-Content-Type-Options': 'nosniff',
        'Strict-Transport-Security': expect.stringMatching(/^max-age=\d+/),
      });
    });

    it('puts the security headers on a successful JSON response', () => {
      expect(jsonResponse(200, { ok: true }).headers).toMatchObject(SECURITY_HEADERS);
    });

    it('lets a response add headers without dropping the security headers', () => {
      const headers = jsonResponse(201, {}, { ETag: '"v1"' }).headers;
      expect(headers).toMatchObject({ ...SECURITY_HEADERS, ETag: '"v1"' });
    });
  });
});

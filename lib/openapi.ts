import * as z from 'zod';
import { delegatedOpenApi } from './authorization-code/openapi-paths';
import { ROUTES } from './routes';
import { ServiceInputSchema, ServiceNameSchema, ServicePatchSchema } from './service-config';

/**
 * The OpenAPI 3.1 description of the API, generated from the same zod schemas the handlers validate with.
 * Served at `GET /api/v2/api_docs` and committed as `openapi.json` (a test fails when that copy is stale).
 */

const TokenResponseSchema = z.object({
  access_token: z.string().describe('The Entra access token. Opaque: do not parse it.'),
  token_type: z.literal('Bearer'),
  expires_in: z
    .number()
    .int()
    .describe('Whole seconds the token is still valid at the time of this response.'),
  expires_at: z.iso.datetime().describe('When the token expires (ISO-8601 UTC).'),
  acquired_at: z.iso.datetime().describe('When the broker requested the token from Entra (ISO-8601 UTC).'),
  scope: z.string().describe('The scope the token was requested for.'),
});

const ErrorResponseSchema = z.object({
  error: z.object({
    code: z.number().int().describe('The HTTP status.'),
    message: z.string().describe('What went wrong, naming the field or upstream error.'),
    context: z
      .record(z.string(), z.unknown())
      .optional()
      .describe('Details, e.g. Entra trace ids or field issues.'),
  }),
});

const ServiceViewSchema = ServiceInputSchema.extend({
  config: z.object({
    client_id: z.string(),
    tenant_id: z.string(),
    grant_type: z.enum(['client_credentials', 'authorization_code']),
    is_client_credentials: z.boolean(),
    scopes: z.string(),
    authority_url: z.string().optional(),
    user_scopes: z.string().optional(),
    redirect_uri: z.string().optional(),
    return_to_hosts: z.array(z.string()).optional(),
    prompt: z.string().optional(),
    cloud: z.enum(['global', 'usgov', 'china']).optional(),
    credential_type: z
      .enum(['certificate', 'kms_certificate', 'federated'])
      .optional()
      .describe('Absent for client_secret.'),
    federation_audience: z.string().optional(),
    client_secret_arn: z
      .string()
      .optional()
      .describe('Present only for services whose secret the administrator brought.'),
    certificate: z
      .string()
      .optional()
      .describe('certificate and kms_certificate services: the (active) public certificate (PEM).'),
    certificate_thumbprint_sha256: z
      .string()
      .optional()
      .describe('base64url SHA-256 of the certificate (x5t#S256), as Entra shows it.'),
    certificate_not_after: z.string().optional().describe('End of the certificate validity (ISO 8601).'),
    key_spec: z.enum(['RSA_2048', 'RSA_3072']).optional().describe('kms_certificate: the key spec.'),
    certificate_validity_days: z
      .number()
      .int()
      .optional()
      .describe('kms_certificate: validity of issued certificates.'),
    kms_key_arn: z
      .string()
      .optional()
      .describe('kms_certificate: present only when the administrator brought the active key.'),
    next_certificate: z
      .string()
      .optional()
      .describe('kms_certificate: the pending next certificate (PEM), until active_certificate names it.'),
    next_certificate_thumbprint_sha256: z.string().optional(),
    next_certificate_not_after: z.string().optional(),
  }),
}).describe('A service as stored, never with its secret or private key.');

const IssuedCertificateSchema = z
  .object({
    certificate: z.string().describe('The new certificate (PEM): upload it to the app registration.'),
    certificate_thumbprint_sha256: z.string().describe('Its thumbprint: the value for active_certificate.'),
    certificate_not_after: z.string(),
  })
  .describe('The next certificate of a kms_certificate service, pending until active_certificate names it.');

const FederationSchema = z
  .object({ issuer: z.string(), subject: z.string(), audience: z.string() })
  .describe('What to enter in the federated identity credential of the app registration.');

const ClearResponseSchema = z.object({ success: z.literal(true), message: z.string() });

const json = (schema: z.ZodType, io: 'input' | 'output' = 'output') =>
  z.toJSONSchema(schema, { io, target: 'draft-2020-12', unrepresentable: 'any' });

function errorResponses(...statuses: number[]): Record<string, unknown> {
  const descriptions: Record<number, string> = {
    400: 'Invalid request (the message names the field)',
    403: 'Service inactive, or the caller is not authorized by IAM',
    404: 'No such service or route',
    405: 'Method not allowed',
    409: 'Name taken, or a concurrent change',
    412: 'If-Match names an outdated version',
    413: 'Body too large',
    415: 'Body is not JSON',
    422: 'Body is not valid JSON',
    502: 'Entra answered with an error or an invalid response',
    503: 'Entra is throttling or unavailable (Retry-After passed on)',
    504: 'Entra did not answer in time',
  };
  return Object.fromEntries(
    statuses.map((s) => [
      String(s),
      {
        description: descriptions[s],
        content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
      },
    ]),
  );
}

const ok = (description: string, ref: string, headers?: Record<string, unknown>) => ({
  description,
  ...(headers ? { headers } : {}),
  content: { 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } },
});

const etag = { ETag: { description: 'The service version, for If-Match', schema: { type: 'string' } } };
const ifMatch = {
  name: 'If-Match',
  in: 'header',
  required: false,
  description: 'Only apply if the service is still at this version (ETag); otherwise 412.',
  schema: { type: 'string' },
};
const nameParam = (n: string) => ({
  name: n,
  in: 'path',
  required: true,
  schema: json(ServiceNameSchema, 'input'),
});
const scopeParam = {
  name: 'scope',
  in: 'query',
  required: false,
  description: 'One of the service scopes; default the first.',
  schema: { type: 'string' },
};
const upstream = [502, 503, 504];

/** Builds the OpenAPI document. Deterministic: the same code always yields the same JSON. */
export function buildOpenApiDocument(): Record<string, unknown> {
  const delegated = delegatedOpenApi({ nameParam, errorResponses, ok, json });
  const paths: Record<string, Record<string, unknown>> = {
    '/api/v2/{service}/client_credentials': {
      parameters: [nameParam('service')],
      get: {
        operationId: 'getToken',
        summary: 'Get a token (cached while valid for more than 60 s)',
        parameters: [scopeParam],
        responses: { '200': ok('A token', 'TokenResponse'), ...errorResponses(400, 403, 404, ...upstream) },
      },
      post: {
        operationId: 'refreshToken',
        summary: 'Get a new token from Entra and replace the cached one',
        parameters: [scopeParam],
        responses: {
          '200': ok('A new token', 'TokenResponse'),
          ...errorResponses(400, 403, 404, ...upstream),
        },
      },
      delete: {
        operationId: 'clearTokens',
        summary: "Remove the service's cached tokens",
        responses: { '200': ok('Cleared', 'ClearResponse'), ...errorResponses(400, 404) },
      },
    },
    '/api/v2/system/service': {
      get: {
        operationId: 'listServices',
        summary: 'List services (never with secrets)',
        responses: { '200': ok('All services', 'ServiceList'), ...errorResponses(403) },
      },
      post: {
        operationId: 'createServices',
        summary: 'Register a service, or several in {"resource": [...]}',
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: {
                oneOf: [
                  { $ref: '#/components/schemas/ServiceInput' },
                  {
                    type: 'object',
                    properties: {
                      resource: { type: 'array', items: { $ref: '#/components/schemas/ServiceInput' } },
                    },
                    required: ['resource'],
                    additionalProperties: false,
                  },
                ],
              },
            },
          },
        },
        responses: {
          '201': ok('Created (same form as sent, without the secret)', 'Service', etag),
          ...errorResponses(400, 409, 413, 415, 422),
        },
      },
    },
    '/api/v2/system/service/{name}': {
      parameters: [nameParam('name')],
      get: {
        operationId: 'getService',
        summary: 'Get one service',
        responses: { '200': ok('The service', 'Service', etag), ...errorResponses(400, 404) },
      },
      patch: {
        operationId: 'updateService',
        summary: 'Change some fields; a new client_secret rotates the secret. Cached tokens are invalidated.',
        parameters: [ifMatch],
        requestBody: {
          required: true,
          content: { 'application/json': { schema: { $ref: '#/components/schemas/ServicePatch' } } },
        },
        responses: {
          '200': ok('The updated service', 'Service', etag),
          ...errorResponses(400, 404, 409, 412, 413, 415, 422),
        },
      },
      delete: {
        operationId: 'deleteService',
        summary: 'Delete a service, its cached tokens and its managed secret (recoverable for 7 days)',
        parameters: [ifMatch],
        responses: {
          '200': ok('The deleted service', 'Service', etag),
          ...errorResponses(400, 404, 409, 412),
        },
      },
    },
    '/api/v2/system/service/{name}/certificate': {
      parameters: [nameParam('name')],
      get: {
        operationId: 'getServiceCertificate',
        summary:
          'The active certificate of a certificate or kms_certificate service (PEM, for the app registration)',
        responses: {
          '200': {
            description: 'The certificate, PEM',
            content: { 'application/x-pem-file': { schema: { type: 'string' } } },
          },
          ...errorResponses(400, 404),
        },
      },
      post: {
        operationId: 'issueNextCertificate',
        summary:
          'kms_certificate: issue the next certificate with a new KMS key while the active one keeps signing; PATCH config.active_certificate switches to it. A pending one it replaces has its key scheduled for deletion (7 days).',
        parameters: [ifMatch],
        responses: {
          '201': ok('The pending certificate', 'IssuedCertificate', etag),
          ...errorResponses(400, 404, 409, 412),
        },
      },
    },
    '/api/v2/system/federation': {
      get: {
        operationId: 'getFederation',
        summary:
          "Issuer, subject and audience to enter in an app registration's federated identity credential (credential_type federated)",
        responses: {
          '200': ok('What Entra must trust', 'Federation'),
          ...errorResponses(404),
        },
      },
    },
    '/api/v2/api_docs': {
      get: {
        operationId: 'getApiDocs',
        summary: 'This document',
        responses: {
          '200': { description: 'OpenAPI 3.1 document', content: { 'application/json': {} } },
          ...errorResponses(403),
        },
      },
    },
    ...delegated.paths,
  };
  // Every route the API serves must be documented, and nothing else.
  const documented = Object.keys(paths).sort();
  const served = [...new Set(ROUTES.map((r) => r.resource))].sort();
  if (JSON.stringify(documented) !== JSON.stringify(served)) {
    throw new Error(`OpenAPI paths ${documented.join(', ')} do not match routes ${served.join(', ')}`);
  }
  const strip = (schema: Record<string, unknown>) => {
    const { $schema: _ignored, ...rest } = schema;
    return rest;
  };
  return {
    openapi: '3.1.0',
    info: {
      title: 'Token Broker',
      version: '1.0.0',
      description:
        'OAuth 2.0 client-credentials tokens from Microsoft Entra ID for AWS workloads, with a DreamFactory-compatible API. Every call is signed with AWS SigV4 (API Gateway IAM authorization).',
      license: { name: 'UNLICENSED', identifier: 'UNLICENSED' },
    },
    servers: [
      {
        url: 'https://{api}.execute-api.{region}.amazonaws.com/{stage}',
        variables: { api: { default: 'api' }, region: { default: 'us-east-1' }, stage: { default: 'prod' } },
      },
    ],
    security: [{ sigv4: [] }],
    paths,
    components: {
      securitySchemes: {
        sigv4: {
          type: 'apiKey',
          name: 'Authorization',
          in: 'header',
          description: 'AWS Signature Version 4 (service execute-api); API Gateway AWS_IAM authorization.',
        },
      },
      schemas: {
        ServiceInput: strip(json(ServiceInputSchema, 'input')),
        ServicePatch: strip(json(ServicePatchSchema, 'input')),
        Service: strip(json(ServiceViewSchema)),
        ServiceList: {
          type: 'object',
          properties: { resource: { type: 'array', items: { $ref: '#/components/schemas/Service' } } },
          required: ['resource'],
        },
        TokenResponse: strip(json(TokenResponseSchema)),
        ClearResponse: strip(json(ClearResponseSchema)),
        Federation: strip(json(FederationSchema)),
        IssuedCertificate: strip(json(IssuedCertificateSchema)),
        Error: strip(json(ErrorResponseSchema)),
        ...delegated.schemas,
      },
    },
  };
}

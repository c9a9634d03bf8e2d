import * as z from 'zod';
import { UserKeySchema } from './delegated-config';

/** The helpers of lib/openapi.ts the delegated paths are written with. */
export interface OpenApiHelpers {
  nameParam(name: string): Record<string, unknown>;
  errorResponses(...statuses: number[]): Record<string, unknown>;
  ok(description: string, ref: string): Record<string, unknown>;
  json(schema: z.ZodType, io?: 'input' | 'output'): Record<string, unknown>;
}

const UserTokenResponseSchema = z.object({
  access_token: z.string().describe('The delegated Entra access token (scp claim). Opaque: do not parse it.'),
  token_type: z.literal('Bearer'),
  expires_in: z
    .number()
    .int()
    .describe('Whole seconds the token is still valid at the time of this response.'),
  expires_at: z.iso.datetime(),
  acquired_at: z.iso.datetime(),
  scope: z.string(),
  user: z.object({
    key: z.string().describe('The caller’s key for the user.'),
    oid: z.string().describe('The user’s object id in Entra.'),
    tid: z.string().describe('The user’s tenant id.'),
    preferred_username: z.string().optional(),
  }),
});

const AuthorizeResponseSchema = z.object({
  authorization_url: z.url().describe('Send the user’s browser here to sign in and consent.'),
  state_expires_at: z.iso.datetime().describe('The URL works once, until this time (10 minutes).'),
});

const ConnectedUsersSchema = z.object({
  resource: z.array(
    z.object({
      key: z.string(),
      oid: z.string(),
      tid: z.string(),
      preferred_username: z.string().optional(),
      connected_at: z.iso.datetime(),
      last_refreshed_at: z.iso.datetime().optional(),
    }),
  ),
});

/** The authorization code flow's paths and schemas, merged into the OpenAPI document by lib/openapi.ts. */
export function delegatedOpenApi(h: OpenApiHelpers): {
  paths: Record<string, Record<string, unknown>>;
  schemas: Record<string, unknown>;
} {
  const user = (description: string) => ({
    name: 'user',
    in: 'query',
    required: true,
    description,
    schema: h.json(UserKeySchema, 'input'),
  });
  const consentRequired = {
    description:
      'The user never consented or the refresh token is dead: context.reason and a fresh context.authorization_url',
    content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
  };
  const page = (description: string) => ({
    description,
    content: { 'text/html': { schema: { type: 'string' } } },
  });
  const strip = (schema: Record<string, unknown>) => {
    const { $schema: _ignored, ...rest } = schema;
    return rest;
  };
  return {
    paths: {
      '/api/v2/{service}/authorize': {
        parameters: [h.nameParam('service')],
        get: {
          operationId: 'startConsent',
          summary: 'Start a user’s consent (authorization code flow): the URL to send the user’s browser to',
          parameters: [
            user('The caller’s own identifier for the user'),
            {
              name: 'return_to',
              in: 'query',
              required: false,
              schema: { type: 'string' },
              description:
                'Where the browser goes after consent; its host must be in the service’s return_to_hosts.',
            },
            {
              name: 'login_hint',
              in: 'query',
              required: false,
              schema: { type: 'string' },
              description: 'The user’s UPN, to preselect the account.',
            },
          ],
          responses: {
            '200': h.ok('The authorization URL', 'AuthorizeResponse'),
            ...h.errorResponses(400, 403, 404, 502, 504),
          },
        },
      },
      '/api/v2/{service}/sso': {
        parameters: [h.nameParam('service')],
        get: {
          operationId: 'consentCallback',
          summary: 'The consent callback the user’s browser is sent to by Entra (no IAM: not for workloads)',
          security: [],
          parameters: ['code', 'state', 'error', 'error_description'].map((name) => ({
            name,
            in: 'query',
            required: false,
            schema: { type: 'string' },
          })),
          responses: {
            '200': page('Connected as … to …; you can close this window'),
            '303': { description: 'To return_to, when the consent asked for it' },
            '400': page(
              'What happened (state used, expired, unknown or of another service; consent refused; redemption or id_token failed) and what to do',
            ),
            '500': page('Internal error, with the request id'),
          },
        },
      },
      '/api/v2/{service}/user_token': {
        parameters: [h.nameParam('service')],
        get: {
          operationId: 'getUserToken',
          summary: 'A delegated token for a user who consented (cached while valid for more than 60 s)',
          parameters: [
            user('The caller’s key for the user'),
            {
              name: 'scope',
              in: 'query',
              required: false,
              schema: { type: 'string' },
              description: 'One of the service’s user scopes; default the first resource scope.',
            },
            {
              name: 'min_ttl',
              in: 'query',
              required: false,
              schema: { type: 'integer', minimum: 0, maximum: 3600 },
            },
          ],
          responses: {
            '200': h.ok('A delegated token', 'UserTokenResponse'),
            '401': consentRequired,
            ...h.errorResponses(400, 403, 404, 502, 503, 504),
          },
        },
        delete: {
          operationId: 'forgetUser',
          summary: 'Forget a user: the refresh token and cached tokens',
          parameters: [user('The caller’s key for the user')],
          responses: { '200': h.ok('Removed', 'ClearResponse'), ...h.errorResponses(400, 404) },
        },
      },
      '/api/v2/system/service/{name}/users': {
        parameters: [h.nameParam('name')],
        get: {
          operationId: 'listConnectedUsers',
          summary: 'The users connected to a service (never a token)',
          responses: { '200': h.ok('Connected users', 'ConnectedUsers'), ...h.errorResponses(400, 404) },
        },
      },
    },
    schemas: {
      AuthorizeResponse: strip(h.json(AuthorizeResponseSchema)),
      UserTokenResponse: strip(h.json(UserTokenResponseSchema)),
      ConnectedUsers: strip(h.json(ConnectedUsersSchema)),
    },
  };
}

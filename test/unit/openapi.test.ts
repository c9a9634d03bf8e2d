import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildOpenApiDocument } from '../../lib/openapi';
import { ROUTES } from '../../lib/routes';

describe('OpenAPI document', () => {
  it('matches the committed openapi.json (run `npm run openapi` after changing a schema)', () => {
    const committed = JSON.parse(readFileSync(join(__dirname, '..', '..', 'openapi.json'), 'utf8'));
    expect(committed).toEqual(buildOpenApiDocument());
  });

  it('documents every method of every route the API serves', () => {
    const doc = buildOpenApiDocument() as { paths: Record<string, Record<string, unknown>> };
    for (const route of ROUTES) {
      for (const method of route.methods)
        expect(doc.paths[route.resource]?.[method.toLowerCase()]).toBeDefined();
    }
  });

  it('describes the create body with the validation schema: unknown fields refused, client_id a GUID', () => {
    const doc = buildOpenApiDocument() as {
      components: {
        schemas: {
          ServiceInput: {
            additionalProperties: boolean;
            properties: { config: { properties: { client_id: { pattern: string } } } };
          };
        };
      };
    };
    const input = doc.components.schemas.ServiceInput;
    expect(input.additionalProperties).toBe(false);
    expect(input.properties.config.properties.client_id.pattern).toContain('[0-9a-f]{8}');
  });
});

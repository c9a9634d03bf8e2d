import type { GetWebIdentityTokenCommandInput } from '@aws-sdk/client-sts';
import type { CallOptions } from '../call-options';
import { CredentialUnavailableError } from '../errors';
import type { WebIdentityTokenSource } from './federated';

/**
 * The STS operation the broker uses, with the SDK's input shape. The one production adapter is functions/aws-json.ts's
 * client (functions/aws-clients.ts); errors are named by STS's error code.
 */
export interface WebIdentityTokenOperations {
  getWebIdentityToken(
    input: GetWebIdentityTokenCommandInput,
    options?: CallOptions,
  ): Promise<{ WebIdentityToken?: string }>;
}

/**
 * The broker's own web identity token from AWS STS (IAM outbound identity federation), RS256, as its Lambda role.
 * STS is called only when a federated service asks for a token.
 */
export class StsWebIdentityTokenSource implements WebIdentityTokenSource {
  private readonly client: WebIdentityTokenOperations;

  constructor(client: WebIdentityTokenOperations) {
    this.client = client;
  }

  async getWebIdentityToken(audience: string, durationSeconds: number): Promise<string> {
    let token: string | undefined;
    try {
      ({ WebIdentityToken: token } = await this.client.getWebIdentityToken({
        Audience: [audience],
        SigningAlgorithm: 'RS256',
        DurationSeconds: durationSeconds,
      }));
    } catch (error) {
      const name = (error as { name?: unknown }).name;
      if (name === 'OutboundWebIdentityFederationDisabledException') {
        throw new CredentialUnavailableError(
          'AWS STS refused to issue a web identity token: outbound identity federation is not enabled for this AWS account; run `aws iam enable-outbound-web-identity-federation` once',
          { cause: error, context: { upstream: 'sts', error: name } },
        );
      }
      if (name === 'AccessDenied' || name === 'AccessDeniedException') {
        throw new CredentialUnavailableError(
          "AWS STS refused to issue a web identity token: the broker's role lacks sts:GetWebIdentityToken for this audience",
          { cause: error, context: { upstream: 'sts', error: name } },
        );
      }
      throw error;
    }
    if (!token) throw new Error('STS GetWebIdentityToken returned no token');
    return token;
  }
}

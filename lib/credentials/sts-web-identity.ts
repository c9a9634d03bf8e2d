import { GetWebIdentityTokenCommand, type STSClient } from '@aws-sdk/client-sts';
import { CredentialUnavailableError } from '../errors';
import type { WebIdentityTokenSource } from './federated';

/**
 * The broker's own web identity token from AWS STS (IAM outbound identity federation), RS256, as its Lambda role.
 * This module and @aws-sdk/client-sts are loaded only when a federated service asks for a token: a broker whose
 * services all use client secrets never loads them (see functions/runtime.ts).
 */
export class StsWebIdentityTokenSource implements WebIdentityTokenSource {
  private readonly client: STSClient;

  constructor(client: STSClient) {
    this.client = client;
  }

  async getWebIdentityToken(audience: string, durationSeconds: number): Promise<string> {
    let token: string | undefined;
    try {
      ({ WebIdentityToken: token } = await this.client.send(
        new GetWebIdentityTokenCommand({
          Audience: [audience],
          SigningAlgorithm: 'RS256',
          DurationSeconds: durationSeconds,
        }),
      ));
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

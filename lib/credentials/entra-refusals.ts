import type { CredentialFacts } from './credential';

/** What the broker tells an administrator about one of Entra's refusals of a credential. */
export interface RefusalExplanation {
  /** What happened and what to fix, naming only public facts (client id, thumbprint, issuer, subject). */
  message: string;
  /** True when Entra is known to accept the same request a little later (a federated credential propagating). */
  retryable: boolean;
}

/** Where the refused request went, for the messages. */
export interface RefusalContext {
  clientId: string;
  tokenEndpoint: string;
}

const quote = (value: string | undefined) => (value === undefined ? '(unknown)' : `"${value}"`);

function certificateName(facts: CredentialFacts): string {
  return `certificate with SHA-256 thumbprint (x5t#S256) ${quote(facts.certificateThumbprintSha256)}`;
}

/**
 * Turns the AADSTS codes of Entra's refusal of a certificate or federated credential into a message that tells
 * the administrator what to fix. Undefined for codes (and credential types) it has nothing to add to.
 */
export function explainRefusal(
  errorCodes: unknown,
  facts: CredentialFacts,
  context: RefusalContext,
): RefusalExplanation | undefined {
  const codes = Array.isArray(errorCodes) ? errorCodes.filter((c) => typeof c === 'number') : [];
  const code = codes[0] as number | undefined;
  if (code === undefined || facts.type === 'client_secret') return undefined;
  const app = `app registration ${quote(context.clientId)}`;
  const federation = facts.federation;
  const refused = (text: string, retryable = false) => ({ message: `AADSTS${code}: ${text}`, retryable });

  switch (code) {
    case 700027:
      return facts.type === 'federated'
        ? refused(
            `Entra could not verify the signature of the broker's federated token: check that the federated credential's issuer is ${quote(federation?.issuer)} exactly and that Entra can read that issuer's keys`,
          )
        : refused(
            `Entra did not accept the client assertion: the ${certificateName(facts)} is not registered on ${app}, or does not match the key that signed; upload this certificate under "Certificates & secrets" (GET /api/v2/system/service/{name}/certificate gives it for kms_certificate services)`,
          );
    case 700024:
      return refused(
        "Entra found the client assertion outside its valid time range: the broker's clock and Entra's differ by more than 5 minutes, or the token expired on its way",
      );
    case 700021:
      return refused(
        `the client assertion names another client than the request: check config.client_id (${quote(context.clientId)})`,
      );
    case 700023:
      return refused(
        `the client assertion's audience (the token endpoint ${quote(context.tokenEndpoint)}) is not the one Entra expects: check config.tenant_id, config.cloud and config.authority_url`,
      );
    case 70021:
      return refused(
        `no federated identity credential on ${app} matches the broker's token: add one with issuer ${quote(federation?.issuer)}, subject ${quote(federation?.subject)} and audience ${quote(federation?.audience)} (exactly, case included; GET /api/v2/system/federation shows them). A credential added minutes ago may still be propagating`,
        true,
      );
    case 700211:
      return refused(
        `${app} has no federated identity credential for the issuer ${quote(federation?.issuer)}: add one with this issuer, subject ${quote(federation?.subject)} and audience ${quote(federation?.audience)}`,
      );
    case 7000214:
    case 7000277:
      return refused(
        `the ${certificateName(facts)} has been revoked on ${app}: issue or upload a new certificate, register it and make it the service's certificate`,
      );
    case 1000502:
      return refused(
        `the ${certificateName(facts)} is outside its validity period (not after ${facts.certificateNotAfter ?? 'unknown'}): rotate it (POST /api/v2/system/service/{name}/certificate for kms_certificate services, or PATCH a new certificate) and register the new one on ${app}`,
      );
    default:
      return undefined;
  }
}

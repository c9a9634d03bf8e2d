import {
  TokenBrokerAccessDeniedError,
  TokenBrokerApiError,
  TokenBrokerConflictError,
  TokenBrokerCredentialsError,
  TokenBrokerNetworkError,
  TokenBrokerNotFoundError,
  TokenBrokerUnavailableError,
} from '../client';

/** The CLI's exit statuses; scripts may rely on them (README, "CLI"). */
export const EXIT = {
  ok: 0,
  /** The broker refused the request for another reason (400, 405, 413, 415, 422, 500, 502). */
  refused: 1,
  /** Unknown command or option, missing or invalid argument, unreadable file, no endpoint or region. */
  usage: 2,
  /** 401/403: unsigned, bad signature, unknown key, not allowed, or the service is inactive. */
  accessDenied: 3,
  /** 404: no such service. */
  notFound: 4,
  /** 409/412: the name is taken, or the service changed since --if-match's version. */
  conflict: 5,
  /** 429/503/504 after the retries, or the broker could not be reached in time: try again later. */
  unavailable: 6,
  /** No AWS credentials to sign with. */
  noCredentials: 7,
} as const;

/** The exit status for an error thrown while running a command. */
export function exitCodeOf(error: unknown): number {
  if (error instanceof TokenBrokerCredentialsError) return EXIT.noCredentials;
  if (error instanceof TokenBrokerNetworkError) return EXIT.unavailable;
  if (error instanceof TokenBrokerAccessDeniedError) return EXIT.accessDenied;
  if (error instanceof TokenBrokerNotFoundError) return EXIT.notFound;
  if (error instanceof TokenBrokerConflictError) return EXIT.conflict;
  if (error instanceof TokenBrokerUnavailableError) return EXIT.unavailable;
  if (error instanceof TokenBrokerApiError) return EXIT.refused;
  return EXIT.refused;
}

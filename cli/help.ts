/** The `--help` text of each command. */

const GLOBAL = `Options for every command:
  --endpoint <url>   the API's URL, stage included (default: $TOKEN_BROKER_URL)
  --profile <name>   AWS profile to sign with (default: the AWS SDK's chain: environment, profile, SSO,
                     container or instance role)
  --region <region>  the API's region (default: from an execute-api host name, else $AWS_REGION)
  --verbose          details on errors (context, request id) and retries, on stderr
  -h, --help         this help`;

const EXIT_CODES = `Exit status: 0 ok; 1 refused by the broker (400, 5xx from Entra...); 2 usage; 3 not authorized (401/403);
4 not found; 5 conflict (409/412); 6 unavailable (429/503/504 after retries, or unreachable); 7 no AWS credentials.`;

export const HELP: Record<string, string> = {
  main: `Usage: token-broker <command> [options]

Gets Entra ID tokens from Token Broker with SigV4-signed requests, and manages its services.

Commands:
  token <service>                 print a token of the service
  exec <service> -- <command...>  run a command with a token in its environment
  services list|get|create|update|delete
                                  manage services (needs the admin grant)
  rotate-secret <name>            replace a service's client secret, read from standard input

Run 'token-broker <command> --help' for a command's options.

${GLOBAL}

${EXIT_CODES}`,

  token: `Usage: token-broker token <service> [--scope <scope>] [--min-ttl <seconds>] [--output json|token|header|env]

Prints a token of the service (GET /api/v2/<service>/client_credentials).

  --scope <scope>        one of the service's scopes (default: its first)
  --min-ttl <seconds>    the token must stay valid this long (0-3600)
  --force                a new token from Entra, replacing the cached one (POST)
  --output json          the API's JSON response (default)
  --output token         the access token alone
  --output header        "Authorization: Bearer <token>", for curl -H
  --output env           "AZURE_ACCESS_TOKEN=<token>", for export $(...) or an env file
  --env-var <name>       the variable name for --output env (default AZURE_ACCESS_TOKEN)

${GLOBAL}

${EXIT_CODES}`,

  exec: `Usage: token-broker exec <service> [--scope <scope>] [--min-ttl <seconds>] [--env-var <name>] -- <command...>

Runs the command with a token of the service in its environment (like aws-vault exec). The exit status is the
command's; 126 if it cannot be run, 127 if it is not found; before it runs, the statuses below.

  --env-var <name>       the variable that holds the token (default AZURE_ACCESS_TOKEN)
  --scope, --min-ttl     as for 'token-broker token'

${GLOBAL}

${EXIT_CODES}`,

  services: `Usage: token-broker services <list|get|create|update|delete> [arguments]

  services list                                    every service, {"resource": [...]}
  services get <name>                              one service
  services create --file <body.json|->             register a service (or {"resource": [...]})
  services update <name> --file <patch.json|-> [--if-match <etag>]
                                                   change fields of a service
  services delete <name> [--if-match <etag>]       delete a service, its cached tokens and managed secret

--file - reads the JSON body from standard input. --verbose also prints the ETag of the service.

${GLOBAL}

${EXIT_CODES}`,

  'rotate-secret': `Usage: token-broker rotate-secret <name> [--if-match <etag>] < secret-file

Replaces the service's client secret with the one read from standard input (one trailing newline is removed).
The secret is never taken from the command line, where other users and shell history could see it.

  printf '%s' "$NEW_SECRET" | token-broker rotate-secret azure_ad_api

${GLOBAL}

${EXIT_CODES}`,
};

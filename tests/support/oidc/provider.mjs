// A real authorization server for knock-mcp's OAuth tests: panva's oidc-provider on loopback.
//
//   node provider.mjs  (configured by the environment, see below; prints "ready <issuer>" once listening)
//
// It issues JWT access tokens (RFC 9068) for one resource, the knock-mcp under test (RFC 8707
// resource indicators), to clients that register themselves (dynamic client registration) and use
// the authorization code flow with PKCE through the development login and consent pages, or to one
// preconfigured confidential client through the client_credentials grant. Everything lives in
// memory: a restart (with a new key, for the rotation test) forgets every client and grant.
//
//   OIDC_PORT               port on 127.0.0.1
//   OIDC_ISSUER             the issuer, e.g. http://127.0.0.1:PORT/tenant (a path, as Keycloak has)
//   OIDC_SIGNING_KEY        a private JWK (JSON) that signs access tokens and ID tokens
//   OIDC_RESOURCE           the resource (knock-mcp's public URL) that tokens are issued for
//   OIDC_RESOURCE_SCOPES    space-separated scopes that resource accepts
//   OIDC_SERVICE_CLIENT     JSON {client_id, client_secret} of the client_credentials client

import { createServer } from 'node:http';
import Provider, { errors } from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`provider.mjs: ${name} is not set`);
    process.exit(2);
  }
  return value;
};

const port = Number(env('OIDC_PORT'));
const issuer = env('OIDC_ISSUER');
const signingKey = JSON.parse(env('OIDC_SIGNING_KEY'));
const resource = env('OIDC_RESOURCE');
const resourceScopes = env('OIDC_RESOURCE_SCOPES');
const serviceClient = JSON.parse(env('OIDC_SERVICE_CLIENT'));

const provider = new Provider(issuer, {
  jwks: { keys: [signingKey] },
  // Only one key, of whatever type the test chose: every client signs ID tokens with its algorithm.
  clientDefaults: { id_token_signed_response_alg: signingKey.alg },
  clients: [
    {
      ...serviceClient,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_post',
    },
  ],
  scopes: ['openid', 'offline_access', ...resourceScopes.split(' ')],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // A client that names no resource gets a token for knock-mcp, as a single-API deployment would.
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        if (indicator !== resource) {
          throw new errors.InvalidTarget(`unknown resource ${indicator}`);
        }
        return {
          scope: resourceScopes,
          audience: resource,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: signingKey.alg } },
        };
      },
    },
  },
});

// The provider trusts no proxy and serves plain HTTP on loopback, as the tests reach it.
provider.proxy = false;

// The issuer has a path (as a Keycloak realm's or Entra's does), so metadata lives at
// <issuer>/.well-known/openid-configuration and a resource server must try the discovery URLs in turn.
const prefix = new URL(issuer).pathname.replace(/\/$/, '');
const callback = provider.callback();
const server = createServer((req, res) => {
  if (!req.url.startsWith(`${prefix}/`)) {
    res.writeHead(404).end();
    return;
  }
  req.originalUrl = req.url;
  req.url = req.url.slice(prefix.length);
  callback(req, res);
});
server.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

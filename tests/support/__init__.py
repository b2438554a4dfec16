"""What the tests (and the benchmarks) share, so that no test module imports another:

- `fake_knock`: a real HTTP fake of Knock on 127.0.0.1;
- `http_server`: a real `knock-mcp --transport http` process, and MCP clients of it;
- `installed`: the installed `knock-mcp` command, run as a person or a client runs it;
- `keys`: the keys and tokens the tests hand out, which must never show in any output;
- `oauth_issuer`: an OAuth issuer's metadata and keys on 127.0.0.1, tokens it signs, hostile tokens;
- `oidc_provider`: a real authorization server (oidc-provider, in `oidc/`, under Node) for the
  whole OAuth flow;
- `payloads`: Knock's recorded payloads (tests/fixtures) and an operation that moves on;
- `polling`: poll policies for a server under test, and waiting for state seen across threads;
- `results`: reading what a tool call returned;
- `environment`: which variables the server reads;
- `soak`: the soak harness.

The pytest fixtures built on these are in tests/conftest.py.
"""

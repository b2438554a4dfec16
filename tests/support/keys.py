"""Keys the tests hand to servers and callers. Each test that handles one checks that it never shows
in an answer, an error or a log, so they are distinctive strings rather than anything real."""

SECRET = "sk_test_Zq9-never-print-this-4f1c"
# Two callers of one HTTP server in `--auth knock-key` mode, each with a Knock key of its own.
TENANT_A = "sk_test_tenantA-0000000000000000"
TENANT_B = "sk_test_tenantB-1111111111111111"

# A token for CI that may deploy but not manage tokens. The secret is in
# the state: protect the state, or hand the secret on at once.
resource "rayplane_api_token" "ci" {
  name       = "ci"
  role       = "writer"
  expires_at = "2030-01-01T00:00:00Z"
}

output "ci_token" {
  value     = rayplane_api_token.ci.secret
  sensitive = true
}

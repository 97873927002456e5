# A token is imported by its id. Its secret was shown only at creation and
# stays null after import.
tofu import rayplane_api_token.ci tok_01jc0000000000000000000000

# What the demo asks the EVE SSO for. Register these scopes with your EVE application
# when you run the demo against the real SSO.
CHARACTER_SCOPES = ["publicData", "esi-skills.read_skills.v1"]
WALLET_SCOPE = "esi-wallet.read_character_wallet.v1"

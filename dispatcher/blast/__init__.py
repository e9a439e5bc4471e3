"""What a blast (one campaign file sent once, resumably) adds around the engine: its account to the user."""

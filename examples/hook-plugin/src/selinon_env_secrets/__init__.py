"""Example Selinon hook plugin."""

"""Streamlit pages of MS-LI Lab (navigation is declared in app.py) and their shared helpers."""

"""The Textual app: chats sidebar, conversation, prompt box, dialogs."""

"""chat-sessions: the shared layer every Lambda function of the service imports."""

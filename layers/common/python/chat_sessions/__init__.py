"""chat-sessions: the shared layer every Lambda function of the service imports."""

from chat_sessions import coldstart

coldstart.pause()  # until the handler is built (chat_sessions.coldstart)

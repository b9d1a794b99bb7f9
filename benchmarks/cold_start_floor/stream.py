"""What a handler without the HTTP resolver imports at least (the stream consumers, the
WebSocket routes): boto3, Powertools' Logger and Metrics, and one pydantic model (the stored
items and the settings are pydantic models). No code of ours."""

import gc

import boto3
from aws_lambda_powertools import Logger, Metrics
from pydantic import BaseModel

logger = Logger(service="floor")
metrics = Metrics(namespace="Floor", service="floor")
session = boto3.Session


class Thing(BaseModel):
    thing_id: str


gc.freeze()  # as chat_sessions.coldstart.resume does once a handler is built
gc.enable()

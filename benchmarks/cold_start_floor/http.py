"""What every HTTP handler imports whatever its route: boto3, Powertools' Logger and Metrics, the
``APIGatewayHttpResolver`` with validation (``chat_sessions.api.build_app``) and one route, and
one pydantic model (requests and responses are pydantic models). No code of ours."""

import gc

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel

logger = Logger(service="floor")
metrics = Metrics(namespace="Floor", service="floor")
router = Router()
session = boto3.Session


class Thing(BaseModel):
    thing_id: str


@router.get("/things/<thing_id>")
def get_thing(thing_id: str) -> dict[str, str]:
    return Thing(thing_id=thing_id).model_dump()


app = APIGatewayHttpResolver(enable_validation=True)
app.include_router(router)


gc.freeze()  # as chat_sessions.coldstart.resume does once a handler is built
gc.enable()

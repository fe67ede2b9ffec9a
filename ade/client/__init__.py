"""A client for the ADE API: httpx for requests, trio-websocket for event streams.

Used by the ``ade config|submit|jobs`` commands and by the load-testing harness::

    async with AdeClient("http://127.0.0.1:8000") as ade:
        config = await ade.add_config(Path("my_config"))
        document = await ade.upload_document(Path("members.xlsx"))
        job = await ade.submit(config["id"], [document["id"]])
        async for event in ade.events(job["id"]):
            print(event["type"])
"""

from ade.client._client import AdeClient, ApiError, EventStreamClosed, open_websocket, zip_folder

__all__ = ["AdeClient", "ApiError", "EventStreamClosed", "open_websocket", "zip_folder"]

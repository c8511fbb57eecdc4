"""Serve the SpeechPrompt v2 demo: ``python app.py`` -> http://127.0.0.1:7860 (``--help`` for options).

Host and port: ``--host``/``--port`` or GRADIO_SERVER_NAME / GRADIO_SERVER_PORT. HTTPS (the microphone needs it on
other machines): ``--ssl-certfile cert.pem --ssl-keyfile key.pem`` or SPEECHPROMPT_SSL_CERTFILE /
SPEECHPROMPT_SSL_KEYFILE. The UI lives in app/ui/.
"""
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported anywhere

from app.ui.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

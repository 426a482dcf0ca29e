"""The Gradio demo of a trained model (`python app.py`): needs the `app` extra (`pip install "multitask-st[app]"`)."""

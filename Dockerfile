# CartPole Lab as a container: a demo link on any Docker host, Kubernetes or a Hugging Face
# Docker Space. Modelled on Streamlit's own Docker tutorial. Build and run:
#
#   docker build -t cartpole-lab .
#   docker run -p 8501:8501 -v cartpole-runs:/runs cartpole-lab
#
# On Hugging Face: a Docker Space, with `app_port: 8501` in the Space's README header (or a
# Space variable PORT=7860). The app folder stays read-only at run time; saved runs go to the
# volume at /runs (without one they live as long as the container).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CARTPOLE_LAB_RUNS=/runs

# A user of its own (uid 1000, as Hugging Face Spaces run containers), never root.
RUN useradd --create-home --uid 1000 lab && mkdir /runs && chown lab /runs

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

# The app itself (.dockerignore keeps out the venv, tests, benchmarks and runs); owned by
# root, so the user who runs it cannot change it.
COPY . .

USER 1000
VOLUME /runs
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/_stcore/health' % os.environ.get('PORT', '8501'), timeout=4)"]
CMD ["sh", "./serve"]
